"""report.html in a real browser: Debian's chromium, driven headless by Playwright, opened from disk.

Skips (with the reason) only when /usr/bin/chromium is not installed; `.ci/run` installs it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from compiler.viz import VizData, write_visualisation
from tests.viz.artifacts import HOSTILE_MODEL, placement_of

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                                "(apt-get install chromium)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), args=ARGS,
            headless=True, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


class Page:
    """A report page opened from disk, recording requests, script errors and dialogs."""

    def __init__(self, browser, artifact, tmp_path: Path, **options):
        self.path = write_visualisation(VizData.from_artifact(artifact), tmp_path / "report.html", **options)
        self.requests, self.errors, self.dialogs = [], [], []
        self.page = browser.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.path.resolve().as_uri())
        self.page.wait_for_selector("svg rect.region")

    def region_count(self, selector: str = "svg rect.region") -> int:
        return self.page.locator(selector).count()


@pytest.fixture
def report(browser, two_wafers, tmp_path):
    page = Page(browser, two_wafers, tmp_path)
    yield page
    assert page.errors == []
    page.page.close()


def test_draws_one_region_per_kernel_and_fetches_nothing(report, two_wafers):
    assert report.region_count() == len(placement_of(two_wafers)["regions"])
    assert report.requests == [report.path.resolve().as_uri()]


def test_hovering_a_region_shows_its_tooltip(report, two_wafers):
    region = placement_of(two_wafers)["regions"][1]
    report.page.locator("#region-1").hover()
    tooltip = report.page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert text.startswith(region["kernel"])
    for field in ("op kind", "layer", "inputs", "bytes per PE", "FLOPs / token", "cycles / pass", "source"):
        assert field in text
    assert f"{region['file']}:{region['line']}" in text and f"{region['cycles_per_token']:,}" in text
    report.page.mouse.move(2, 2)
    tooltip.wait_for(state="hidden")


def test_search_highlights_kernels_by_name(report, two_wafers):
    names = [r["kernel"] for r in placement_of(two_wafers)["regions"]]
    expected = sum("up_proj" in n for n in names)
    report.page.fill("#search", "UP_PROJ")
    assert report.region_count("svg rect.region.match") == expected > 0
    assert report.page.locator("#match-count").inner_text() == f"{expected} of {len(names)} kernels"
    assert report.page.locator("#kernel-table tbody tr:visible").count() == expected
    report.page.fill("#search", "")
    assert report.region_count("svg rect.region.match") == 0
    assert report.page.locator("#kernel-table tbody tr:visible").count() == len(names)


def test_screenshot_is_not_blank(report, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    shot = tmp_path / "report.png"
    report.page.screenshot(path=str(shot))
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50
    most_common = max(colours)[0] / (image.width * image.height)
    assert most_common < 0.9  # not one flat background


def test_wheel_zooms_and_fit_resets(report):
    svg = report.page.locator("#picture svg")
    home = svg.get_attribute("viewBox")
    box = svg.bounding_box()
    report.page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2)
    report.page.mouse.wheel(0, -600)
    zoomed = svg.get_attribute("viewBox")
    assert float(zoomed.split()[2]) < float(home.split()[2])
    report.page.click("#zoom-reset")
    assert [float(v) for v in svg.get_attribute("viewBox").split()] == [float(v) for v in home.split()]


def test_colour_switch_recolours_regions_and_legend(report):
    data = json.loads(report.page.locator("#viz-data").text_content())
    report.page.select_option("#color-by", "stage-time")
    fills = report.page.eval_on_selector_all("svg rect.region", "rs => rs.map(r => r.getAttribute('fill'))")
    assert fills == data["fills"]["stage-time"]
    visible = report.page.eval_on_selector_all(
        "g.legend", "gs => gs.filter(g => g.getAttribute('display') !== 'none').map(g => g.dataset.mode)")
    assert visible == ["stage-time"]


def test_kernel_table_sorts_by_a_column(report, two_wafers):
    report.page.click("#kernel-table th:has-text('cycles/pass')")
    values = report.page.eval_on_selector_all(
        "#kernel-table tbody tr", "rows => rows.map(r => Number(r.children[13].dataset.value))")
    assert values == sorted(values) and len(values) == len(placement_of(two_wafers)["regions"])
    report.page.click("#kernel-table th:has-text('cycles/pass')")
    values = report.page.eval_on_selector_all(
        "#kernel-table tbody tr", "rows => rows.map(r => Number(r.children[13].dataset.value))")
    assert values == sorted(values, reverse=True)


def test_markup_in_names_does_not_run(browser, hostile, tmp_path):
    page = Page(browser, hostile, tmp_path)
    assert page.dialogs == [] and page.errors == []
    assert page.page.locator("script").count() == 2 and page.page.locator("img").count() == 0
    assert page.page.locator("h1").inner_text().startswith(HOSTILE_MODEL)
    page.page.close()
