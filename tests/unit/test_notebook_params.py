"""Notebook parameters read from the `parameters` cell with `ast`, on the shipped notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamo_bench.errors import SpecError
from dynamo_bench.notebooks import (
    list_notebooks,
    notebook_parameters,
    parameters_from_source,
    run_notebook,
)

REPO = Path(__file__).resolve().parents[2]


def _assigned(name: str) -> list[str]:
    cells = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    src = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
                  ["source"])
    return [line.split("=", 1)[0].strip() for line in src.splitlines()
            if "=" in line and not line.startswith((" ", "#"))]


@pytest.mark.parametrize("name", list_notebooks())
def test_every_assignment_of_the_parameters_cell_is_a_parameter(name: str) -> None:
    assert list(notebook_parameters(name)) == _assigned(name)


def test_defaults_holding_an_equals_sign_are_kept() -> None:
    # papermill's inspector dropped both (its parser stops at the second '=')
    assert notebook_parameters("agg_vs_disagg")["sla"] == {
        "chat": "ttft_ms.p90<=2000,itl_ms.p90<=30"}
    assert notebook_parameters("concurrency_sweep")["sla"] == "ttft_ms.p90<=500,itl_ms.p90<=25"
    q = notebook_parameters("quickstart")
    assert q["model"] is None and q["verify"] is True and q["out"] == "results/quickstart-notebook"


def test_expressions_keep_their_source_text() -> None:
    params = parameters_from_source(
        'a = 1  # n\nb: int = 2\nc = "x=y"\nd = list(range(3))\nx = y = [1, "=="]\n'
        'if a:\n    hidden = 1\n')
    assert params == {"a": 1, "b": 2, "c": "x=y", "d": "list(range(3))", "x": [1, "=="],
                      "y": [1, "=="]}
    with pytest.raises(SpecError, match="does not parse"):
        parameters_from_source("a = (")


def test_unknown_parameter_is_refused_in_one_line_listing_the_known_ones(tmp_path) -> None:
    with pytest.raises(SpecError) as info:
        run_notebook("concurrency_sweep", {"slaa": "x"}, cwd=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("-p slaa: ")
    assert "deployment, workload, concurrencies, requests, sla, out" in msg
    assert not (tmp_path / "results").exists()
