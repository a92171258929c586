"""Choosing the answer of a tier: verified beats unverified beats failed verification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamo_bench.report.best import answer_row, caveats, choose
from dynamo_bench.tune.record import TrialRecord
from dynamo_bench.tune.records import StudyRecord
from dynamo_bench.tune.sweep_file import parse_sweep
from tests.unit.test_tune import SWEEP


def _row(trial: int, kind: str, value: float | None, status: str, **extra: Any) -> TrialRecord:
    point = {"load": extra.pop("best_load", 8), "feasible": True, "usable": True}
    return TrialRecord(tier="batch", kind=kind, number=trial, state="COMPLETE", status=status,
                       values=None if value is None else [value], config=f"config {trial}",
                       deployment={"name": f"d{trial}"}, reason=extra.pop("reason", None),
                       verifies=extra.pop("verifies", None),
                       constraints=extra.pop("constraints", {"m": -1.0}),
                       best=point if status == "complete" else None, **extra)


def record(rows: list[TrialRecord]) -> StudyRecord:
    sweep = parse_sweep(SWEEP)
    return StudyRecord(Path("."), "sqlite://", sweep, sweep.slas(), rows)


def test_verified_beats_unverified_beats_failed_verification() -> None:
    rows = [_row(0, "explore", 100.0, "complete"),        # best predicted, fails live
            _row(1, "explore", 90.0, "complete"),         # verified, meets the SLA
            _row(2, "explore", 95.0, "complete"),         # never verified
            _row(3, "explore", 120.0, "infeasible", reason="misses the SLA"),
            _row(0, "verify", 0.0, "infeasible", verifies=0, reason="live: ITL too high"),
            _row(1, "verify", 85.0, "complete", verifies=1)]
    c = choose(record(rows), "batch")
    assert c.best.trial == 1 and c.best.verified_ok and c.best.verified_value == 85.0
    assert c.runner_up.trial == 2
    assert "not verified live" in c.why_runner_up_lost
    assert c.verdict == "meets the SLA live"


def test_failed_verifications_are_said_when_the_answer_is_unverified() -> None:
    rows = [_row(0, "explore", 100.0, "complete"), _row(1, "explore", 95.0, "complete"),
            _row(0, "verify", 0.0, "failed", verifies=0, reason="stack not ready")]
    c = choose(record(rows), "batch")
    assert c.best.trial == 1 and c.best.verified is None
    assert c.verdict.startswith("not verified: live verification failed for trial 0")
    assert "failed live verification: stack not ready" in c.why_runner_up_lost


def test_no_feasible_trial_names_the_closest() -> None:
    rows = [_row(0, "explore", 0.0, "infeasible", reason="far"),
            _row(1, "explore", 0.0, "infeasible", reason="near")]
    rows = [r.model_copy(update={"constraints": {"ttft_ms_p90": slack, "memory": 0.0}})
            for r, slack in zip(rows, (2.0, 0.1))]
    c = choose(record(rows), "batch")
    assert c.best is None and c.closest is not None and c.closest.reason == "near"
    assert c.verdict == "no configuration meets the SLA"


def test_caveats_flag_a_capped_load_a_tie_and_an_sla_edge() -> None:
    quiet = [_row(0, "explore", 100.0, "complete"), _row(1, "explore", 80.0, "complete")]
    assert caveats(choose(record(quiet), "batch"), load_limit=32) == []

    capped = [_row(0, "explore", 100.0, "complete", best_load=32),
              _row(1, "explore", 80.0, "complete")]
    notes = caveats(choose(record(capped), "batch"), load_limit=32)
    assert len(notes) == 1 and "load.limit (32)" in notes[0]

    tie = [_row(0, "explore", 100.0, "complete"), _row(1, "explore", 98.0, "complete")]
    notes = caveats(choose(record(tie), "batch"), load_limit=32)
    assert len(notes) == 1 and "config 1" in notes[0] and "tie" in notes[0]

    edge = [_row(0, "explore", 100.0, "complete",
                 constraints={"ttft_ms.p90": -0.01, "itl_ms.p90": -0.5}),
            _row(1, "explore", 50.0, "complete")]
    notes = caveats(choose(record(edge), "batch"), load_limit=32)
    assert len(notes) == 1 and "ttft_ms.p90" in notes[0] and "itl_ms.p90" not in notes[0]


def test_the_answer_row_is_one_projection_of_the_choice() -> None:
    rows = [_row(0, "explore", 100.0, "complete", best_load=16),
            _row(1, "explore", 90.0, "complete"),
            _row(0, "verify", 85.0, "complete", verifies=0)]
    r = record(rows)
    a = answer_row(r, choose(r, "batch"))
    assert a == {"tier": "batch", "sla": str(r.slas["batch"]), "trial": 0,
                 "config": "config 0", "gpus": None, "concurrency": 16,
                 "predicted_tok_s_per_gpu": 100.0, "verified_tok_s_per_gpu": 85.0,
                 "verified_ok": True, "verdict": "meets the SLA live",
                 "files": str(Path(".") / "best" / "batch")}
    nothing = record([_row(0, "explore", 0.0, "infeasible", reason="far")])
    none = answer_row(nothing, choose(nothing, "batch"))
    assert none["trial"] is None and none["verdict"] == "no configuration meets the SLA"
    assert none["files"] is None and none["verified_ok"] is None
