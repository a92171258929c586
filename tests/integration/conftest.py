"""Integration tests run real Dynamo processes (frontend + mocker workers) on this machine."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass
class QuickstartRun:
    """`dynamo-bench tune sweeps/quickstart.yaml` as a user runs it, once per session."""

    out: Path
    seconds: float
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> QuickstartRun:
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "tune",
                           str(REPO / "sweeps" / "quickstart.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    return QuickstartRun(out, time.monotonic() - t0, proc)
