"""Integration tests run real Dynamo processes (frontend + mocker workers) on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_bench.specs import DeploymentSpec, load_deployment

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def spec_file():
    def load(name: str) -> DeploymentSpec:
        return load_deployment(str(REPO / "serving" / name))

    return load
