"""Side by side with AIConfigurator: its picks scored like ours, stored with the study, shown
in every report file (AIConfigurator runs for real; it is a dependency and needs no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamo_bench import api
from dynamo_bench.tune.peer import EVALUATORS, PeerComparison, question
from dynamo_bench.tune.sweep_file import parse_sweep

SWEEP = {
    "name": "peer-unit", "deployment": {"model": "Qwen3-8B", "backend": "vllm",
                                        "gpu": "h100_sxm"},
    "budget": {"gpus": 2, "trials": 8},
    "space": {"mode": ["agg", "disagg"], "tp": [1, 2], "max_num_seqs": [64, 256]},
    "workload": {"isl": {"mean": 1024}, "osl": {"mean": 128}, "concurrency": 1},
    "sla": {"chat": "ttft_ms.p90<=1000,itl_ms.p90<=15"},
    "load": {"limit": 256},
    "fidelity": {"verify": "none"},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> api.TuningStudy:
    return api.tune(parse_sweep(SWEEP), tmp_path_factory.mktemp("peer") / "study")


def test_the_question_is_the_sweeps() -> None:
    sweep = parse_sweep(SWEEP)
    q = question(sweep, sweep.slas()["chat"])
    assert (q["total_gpus"], q["system"], q["backend"]) == (2, "h100_sxm", "vllm")
    assert (q["isl"], q["osl"], q["ttft"], q["tpot"]) == (1024, 128, 1000.0, 15.0)
    assert (Path(q["model_path"]) / "config.json").is_file()


def test_aiconfigurators_picks_are_scored_beside_ours_and_kept(study: api.TuningStudy) -> None:
    doc = study.record().meta["peer"]["chat"]
    c = PeerComparison.from_json(doc)
    assert c.skipped is None and c.aiconfigurator_version
    sources = [p.source for p in c.picks]
    assert sources[0] == "dynamo-bench" and sources.count("aiconfigurator") >= 1
    answer = study.best("chat").best
    assert doc["trial"] == answer.trial
    for p in c.picks:
        assert set(p.scores) == set(EVALUATORS)
        s = p.scores["study"]
        assert s.status == "complete" and s.tok_s_per_gpu > 0 and s.itl_ms_p90 <= 15
        if p.source == "aiconfigurator":
            assert p.own_estimate_tok_s_per_gpu > 0
    # our pick is scored at exactly its explored value by the study's own evaluator
    assert c.picks[0].scores["study"].tok_s_per_gpu == pytest.approx(answer.predicted)
    for e in EVALUATORS:
        best_theirs = max(p.scores[e].tok_s_per_gpu for p in c.picks
                          if p.source == "aiconfigurator")
        assert c.ratio(e) == pytest.approx(c.picks[0].scores[e].tok_s_per_gpu / best_theirs)


def test_the_comparison_is_in_every_report_file(study: api.TuningStudy) -> None:
    study.report(html=True)
    f = study.folder
    summary = (f / "best" / "chat" / "summary.md").read_text()
    assert "## Side by side with AIConfigurator" in summary and "| aiconfigurator |" in summary
    assert "dynamo-bench's pick / AIConfigurator's best: study" in summary
    report = json.loads((f / "report.json").read_text())
    assert report["aiconfigurator"]["chat"]["ratio"]["study"] > 0
    page = (f / "report.html").read_text()
    assert "Side by side with AIConfigurator" in page and "aiconfigurator" in page


def test_a_question_it_cannot_answer_is_said_not_hidden() -> None:
    sweep = parse_sweep({**SWEEP, "deployment": {**SWEEP["deployment"], "precision": "fp8"}})
    c = api.compare_with_aiconfigurator(sweep)["chat"]
    assert c.skipped and "bf16" in c.skipped and not c.picks


def test_the_peer_command(study: api.TuningStudy, tmp_path: Path) -> None:
    sweep_file = tmp_path / "peer.yaml"
    sweep_file.write_text(json.dumps(SWEEP))
    out = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "peer", str(sweep_file),
                          "--study", str(study.folder)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| dynamo-bench |" in out.stdout and "| aiconfigurator |" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "peer", str(sweep_file),
                          "--tier", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--tier: 'nope' is not a tier" in bad.stderr
