"""Every notebook runs under papermill with small parameters; a bad parameter fails the way the
CLI does, and the executed copy is kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamo_bench import api
from dynamo_bench.errors import SpecError
from dynamo_bench.notebooks import list_notebooks, notebook_parameters, run_notebook

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "dynamo_bench.cli"]
SHARED = ["sweep", "model", "gpu", "gpus", "workload", "sla", "trials", "fidelity", "out"]


def outputs(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return "\n".join(json.dumps(c.get("outputs", [])) for c in cells)


def test_every_notebook_has_a_parameters_cell_then_only_public_api_calls() -> None:
    names = list_notebooks()
    assert set(names) >= {"quickstart", "agg_vs_disagg", "concurrency_sweep",
                          "profile_calibrate", "study_explorer"}
    for name in names:
        cells = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), name
        for cell in code[1:]:
            src = "".join(cell["source"])
            imports = [line for line in src.splitlines() if line.startswith(("import ",
                                                                              "from "))]
            for line in imports:
                assert "dynamo_bench." not in line, f"{name}: {line} (use the public API)"
    assert set(notebook_parameters("quickstart")) == set(SHARED) | {"verify"}


def test_quickstart_notebook_via_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "study"
    proc = subprocess.run([*CLI, "notebook", "run", "quickstart", "-p", "model", "Qwen3-8B",
                           "-p", "gpus", "2", "-p", "trials", "6", "-p", "verify", "false",
                           "-p", "sla", '{chat: "ttft_ms.p90<=600,itl_ms.p90<=30"}',
                           "-p", "out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    executed = out / "quickstart.ipynb"
    assert executed.is_file()
    text = outputs(executed)
    assert "agg" in text and "chat" in text
    assert (out / "best" / "chat" / "deployment.yaml").is_file()
    assert (out / "report.html").is_file()


def test_a_bad_parameter_fails_like_the_cli_and_keeps_the_executed_copy(
        tmp_path: Path) -> None:
    bad_sla = {"chat": "tpot_ms.p90<=20"}
    with pytest.raises(SpecError) as api_error:
        api.sweep_from(str(REPO / "sweeps" / "quickstart.yaml"), sla=bad_sla)
    out = tmp_path / "bad"
    proc = subprocess.run([*CLI, "notebook", "run", "quickstart", "-p", "sla",
                           '{chat: "tpot_ms.p90<=20"}', "-p", "out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2
    # progress lines (one per cell, off a terminal) come before the error: its one line last
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"dynamo-bench: error: {api_error.value}"
    assert all(line.startswith("notebook quickstart: cell ") for line in lines[:-1]), lines
    executed = out / "quickstart.ipynb"
    assert executed.is_file() and "SpecError" in executed.read_text()
    unknown = subprocess.run([*CLI, "notebook", "run", "quickstart", "-p", "trails", "3"],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert unknown.returncode == 2 and "-p trails" in unknown.stderr
    assert unknown.stderr.strip().count("\n") == 0


def test_agg_vs_disagg_notebook(tmp_path: Path) -> None:
    nb = run_notebook("agg_vs_disagg", {"model": "Qwen3-8B", "gpus": 4, "trials": 8,
                                        "isl_values": [512, 4096],
                                        "out": str(tmp_path / "ad")}, cwd=REPO)
    assert nb == tmp_path / "ad" / "agg_vs_disagg.ipynb"
    assert (tmp_path / "ad" / "fronts.png").is_file()
    assert "disagg / agg" in outputs(nb)
    for mode in ("agg", "disagg"):
        for isl in (512, 4096):
            t = api.load_study(tmp_path / "ad" / f"{mode}-isl{isl}").trials()
            assert set(t["mode"].dropna()) == {mode}


def test_concurrency_sweep_notebook(tmp_path: Path) -> None:
    nb = run_notebook("concurrency_sweep", {"workload": "sweeps/workloads/tiny.yaml",
                                            "concurrencies": [1, 2], "requests": 8,
                                            "out": str(tmp_path / "cs")}, cwd=REPO)
    assert (tmp_path / "cs" / "curves.png").is_file()
    assert (tmp_path / "cs" / "summary.csv").is_file()
    assert "ttft_ms_p90" in outputs(nb)


def test_profile_calibrate_notebook(tmp_path: Path) -> None:
    nb = run_notebook("profile_calibrate", {"isl_points": [128, 512], "batch_points": [1, 4, 8],
                                            "contexts": [256],
                                            "out": str(tmp_path / "pc")}, cwd=REPO)
    assert (tmp_path / "pc" / "tables.npz").is_file()
    assert (tmp_path / "pc" / "calibration.png").is_file()
    assert "fitted tables" in outputs(nb)


def test_study_explorer_notebook_on_the_quickstart_study(quickstart) -> None:
    assert quickstart.proc.returncode == 0
    nb = run_notebook("study_explorer", {"study_folder": str(quickstart.out)}, cwd=REPO)
    assert nb == quickstart.out / "study_explorer.ipynb"
    text = outputs(nb)
    assert "meets the SLA live" in text and "interactive" in text
