"""report.html as text: self-contained, escaped, and holding the summary and one row per kernel."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from compiler.viz import render
from compiler.viz.html import time_rows
from tests.viz.artifacts import HOSTILE_MODEL, HOSTILE_MODULE, placement_of, viz_data


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the JSON data block."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.data_json = ""
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_data = tag == "script" and dict(attrs).get("id") == "viz-data"

    def handle_endtag(self, tag):
        self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            self.data_json += data


def page(artifact, **options) -> tuple[str, Elements]:
    text = render(viz_data(artifact), ".html", **options).decode()
    parser = Elements()
    parser.feed(text)
    return text, parser


def test_self_contained_no_network(any_artifact):
    text, parsed = page(any_artifact)
    assert not [t for t, a in parsed.tags if t in ("link", "iframe", "img", "object", "embed")]
    assert not [a for t, a in parsed.tags if t == "script" and "src" in a]
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "@import" not in text and "url(http" not in text


def test_one_region_and_one_table_row_per_kernel(any_artifact):
    placement = placement_of(any_artifact)
    _, parsed = page(any_artifact)
    regions = [a for t, a in parsed.tags if t == "rect" and a.get("class") == "region"]
    rows = [a for t, a in parsed.tags if t == "tr" and "data-index" in a]
    assert len(regions) == len(rows) == len(placement["regions"])
    data = json.loads(parsed.data_json)
    assert [r["kernel"] for r in data["regions"]] == [r["kernel"] for r in placement["regions"]]
    assert set(data["fills"]) == {"layer", "kind", "sram", "stage-time"}
    assert all(len(fills) == len(placement["regions"]) for fills in data["fills"].values())


def test_summary_has_the_compile_figures(two_wafers):
    text, _ = page(two_wafers)
    for heading in ("wafers", "PEs used", "SRAM used", "bottleneck", "predicted tokens/s", "Compile times"):
        assert f">{heading}<" in text
    assert "2 used" in text


def test_compile_times_from_the_caller_win(one_wafer):
    text, _ = page(one_wafer, compile_seconds={"export": 1.25, "place": 2.5})
    assert ">export<" in text and "1.25 s" in text and "3.75 s" in text


def test_time_rows_do_not_count_placer_sub_phases_twice():
    rows = time_rows({"place": 2.0, "place.construct": 1.5, "emit": 1.0})
    assert rows[-1] == ("total", "3.00 s")
    assert time_rows(None) == [] and time_rows({}) == []


def test_markup_in_names_is_shown_not_run(hostile):
    text, parsed = page(hostile)
    assert "<script>alert" not in text and "<img src=x" not in text
    scripts = [a for t, a in parsed.tags if t == "script"]
    assert len(scripts) == 2  # the data block and the page's own script, nothing injected
    assert not [a for t, a in parsed.tags if t == "img"]
    data = json.loads(parsed.data_json)  # the data keeps the names exactly
    assert any(r["module"] == HOSTILE_MODULE for r in data["regions"])
    assert "&lt;script&gt;alert(&#34;model&#34;)&lt;/script&gt;" in text or \
        "&lt;script&gt;alert(&quot;model&quot;)&lt;/script&gt;" in text
    assert HOSTILE_MODEL not in text


@pytest.mark.parametrize("mode", ["layer", "stage-time"])
def test_page_starts_in_the_asked_colour_mode(one_wafer, mode):
    _, parsed = page(one_wafer, color_by=mode)
    selected = [a for t, a in parsed.tags if t == "option" and "selected" in a]
    assert [a["value"] for a in selected] == [mode]
    visible = [a for t, a in parsed.tags if t == "g" and a.get("class") == "legend" and "display" not in a]
    assert [a["data-mode"] for a in visible] == [mode]
