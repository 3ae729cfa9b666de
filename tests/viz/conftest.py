"""Fixtures: artifacts compiled once per session (well under a second each) by tests/viz/artifacts.py."""
from __future__ import annotations

import pytest

from compiler.artifact import Artifact
from passes.defects import DefectMap
from tests.viz.artifacts import HOSTILE_MODEL, compile_artifact, layered_graph


@pytest.fixture(scope="session")
def one_wafer() -> Artifact:
    return compile_artifact(layered_graph())


@pytest.fixture(scope="session")
def two_wafers() -> Artifact:
    return compile_artifact(layered_graph(), fabric=(80, 80), wafers=2)


@pytest.fixture(scope="session")
def defective() -> Artifact:
    defects = lambda wafers: DefectMap.random(0.03, 1, (16, 16), wafers)  # noqa: E731
    return compile_artifact(layered_graph(), defects=defects)


@pytest.fixture(scope="session")
def hostile() -> Artifact:
    return compile_artifact(layered_graph(layers=1, hostile=True), model_name=HOSTILE_MODEL)


@pytest.fixture(params=["one_wafer", "two_wafers", "defective"])
def any_artifact(request) -> Artifact:
    return request.getfixturevalue(request.param)
