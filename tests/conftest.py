"""Shared test set-up: a private model cache, opt-in slow tests, and a stray-process guard."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalogue model directories are built once per test session, in a private folder."""
    path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("DYNAMO_BENCH_CACHE")
    os.environ["DYNAMO_BENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DYNAMO_BENCH_CACHE", None)
    else:
        os.environ["DYNAMO_BENCH_CACHE"] = old


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def no_stray_processes() -> None:
    """Every test must leave no child process behind (checked by PID, never by name)."""
    before = _descendants()
    yield
    leftover = []
    for pid in _descendants() - before:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                leftover.append(f"{pid} {' '.join(proc.cmdline()[:4])}")
        except psutil.NoSuchProcess:
            pass
    assert not leftover, f"processes left running: {leftover}"
