"""Typed trial records read back from real Optuna trials, and the one ranking of candidates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import optuna
import pytest
from optuna.trial import TrialState

from dynamo_bench.report.best import ranked
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.tune import evaluate
from dynamo_bench.tune.evaluate import POINT_FIELDS, Evaluation, point_row
from dynamo_bench.tune.names import SCHEMA_VERSION
from dynamo_bench.tune.ranking import rank_candidates
from dynamo_bench.tune.record import Fidelity, ProbePoint, Status, TrialRecord
from dynamo_bench.tune.records import StudyRecord, point_rows, trial_row
from dynamo_bench.tune.sweep_file import parse_sweep
from dynamo_bench.tune.tuner import TrialFailed, Tuner, candidates
from tests.unit.test_tune import SWEEP

SWEEP_SPEC = parse_sweep(SWEEP)
SLA = SWEEP_SPEC.slas()["batch"]  # ttft_ms.p90<=2000, itl_ms.p90<=40


def test_a_probe_point_has_the_stored_fields_typed_as_in_metrics() -> None:
    fields = ProbePoint.model_fields
    assert list(fields) == [*POINT_FIELDS, "load", "feasible", "usable"]
    for name in POINT_FIELDS:
        assert fields[name].annotation == Metrics.model_fields[name].annotation, name
        assert fields[name].default == Metrics.model_fields[name].default, name
    assert get_args(Status) == get_args(evaluate.Status)
    assert get_args(Fidelity) == get_args(evaluate.Fidelity)


def _metrics(concurrency: int, ttft: float, itl: float, per_gpu: float) -> Metrics:
    return Metrics(source="replay", concurrency=concurrency, gpus=1, ttft_ms_p90=ttft,
                   itl_ms_p90=itl, output_tok_s=per_gpu, output_tok_s_per_gpu=per_gpu,
                   output_tok_s_per_user=per_gpu / concurrency, requests=64,
                   time_base="simulated", duration_s=3.5)


def _evaluation(per_gpu: float | None) -> Evaluation:
    """A search of two probes: the first meets the SLA; the second does when `per_gpu` is set,
    else nothing does (infeasible)."""
    ok = per_gpu is not None
    first = point_row(8.0, _metrics(8, 300.0, 20.0 if ok else 90.0, (per_gpu or 50) / 2), SLA)
    second = point_row(16, _metrics(16, 900.0, 35.0 if ok else 95.0, per_gpu or 60.0), SLA)
    points = [first, second]
    best = second if ok else None
    return Evaluation("complete" if ok else "infeasible", "replay", points=points, best=best,
                      limited_by="sla", elapsed_s=0.25,
                      reason=None if ok else "misses the SLA even at concurrency 8")


def _deployment(seqs: int) -> dict[str, Any]:
    return {"name": "unit", "mode": "agg", "model": "Qwen3-8B", "backend": "mocker",
            "workers": {"agg": {"tp": 2, "replicas": 2, "max_num_seqs": seqs}}}


def _run(study: optuna.Study, seqs: int, ev: Evaluation, queued: dict[str, Any] | None = None,
         **attrs: Any) -> int:
    """One trial of `seqs` (enqueued with the `queued` attributes, as the tuner queues start
    points and retries), written as the tuner writes it (its `_record`, with this sweep)."""
    study.enqueue_trial({"seqs": seqs}, user_attrs=queued or {})
    trial = study.ask({"seqs": optuna.distributions.CategoricalDistribution([16, 32, 64])})
    trial.set_user_attr("tuner", "host:1:2")
    trial.set_user_attr("fidelity", ev.fidelity)
    trial.set_user_attr("config", f"agg 2x tp2 seqs{trial.params['seqs']}")
    trial.set_user_attr("deployment", _deployment(seqs))
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    try:
        tuner: Any = SimpleNamespace(sweep=SWEEP_SPEC)  # `_record` reads only the sweep
        values = Tuner._record(tuner, trial, SLA, ev)
    except TrialFailed:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, values)
    return trial.number


@pytest.fixture()
def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="unit.batch",
                            directions=["maximize"])
    s.set_user_attr("tier", "batch")
    _run(s, 16, _evaluation(900.0), {"start_point": True})   # 0: feasible, a start point
    _run(s, 32, _evaluation(None))                           # 1: infeasible
    _run(s, 64, Evaluation("failed", "replay", reason="worker died: agg-0 exited -9"))  # 2
    _run(s, 64, _evaluation(1200.0))                         # 3: the best
    _run(s, 16, _evaluation(900.0), duplicate_of=0)          # 4: the same deployment as 0
    _run(s, 32, _evaluation(900.0))                          # 5: ties with 0, later
    s.enqueue_trial({"seqs": 32}, user_attrs={"retry_of": 1})  # 6: waiting
    return s


def _records(study: optuna.Study) -> dict[int, TrialRecord]:
    return {t.number: TrialRecord.from_trial(t, "batch", "explore") for t in study.trials}


def test_a_record_reads_every_attribute_the_tuner_writes(study: optuna.Study) -> None:
    r = _records(study)
    best = r[3]
    assert best.schema_version == SCHEMA_VERSION
    assert (best.number, best.tier, best.kind, best.state, best.status) == \
        (3, "batch", "explore", "COMPLETE", "complete")
    assert best.feasible and best.value == 1200.0 and best.values == [1200.0]
    assert best.fidelity == "replay" and best.config == "agg 2x tp2 seqs64"
    assert best.params == {"seqs": 64} and best.deployment == _deployment(64)
    assert best.mode == "agg" and best.gpus == 4 and best.spec().gpus == 4
    assert [p.load for p in best.probes] == [8.0, 16.0] and best.best == best.probes[1]
    assert best.best.output_tok_s_per_gpu == 1200.0 and best.best.time_base == "simulated"
    assert best.probes_at(16) == [best.best] and best.probes_at(None) == best.probes
    assert best.limited_by == "sla" and best.elapsed_s == 0.25 and best.gpu_hours == 0.0
    assert best.memory_shortfall == 0.0 and best.tuner == "host:1:2"
    assert set(best.constraints) == {"ttft_ms_p90", "itl_ms_p90", "memory"}
    assert all(v <= 0 for v in best.constraints.values())
    assert best.started is not None and best.completed is not None
    assert r[0].start_point and not best.start_point

    infeasible = r[1]
    assert infeasible.status == "infeasible" and not infeasible.feasible
    assert infeasible.value == 0.0 and infeasible.best is None
    assert infeasible.reason == "misses the SLA even at concurrency 8"
    assert infeasible.constraints["itl_ms_p90"] > 0

    failed = r[2]
    assert failed.state == "FAIL" and failed.status == "failed" and failed.values is None
    assert failed.reason == "worker died: agg-0 exited -9" and failed.probes == []
    assert failed.constraints == {}

    assert r[4].duplicate_of == 0
    waiting = r[6]
    assert waiting.state == "WAITING" and waiting.retry_of == 1 and waiting.status is None
    assert waiting.deployment is None and waiting.gpus is None and waiting.probes == []


def test_a_record_survives_json_and_rejects_unknown_fields(study: optuna.Study) -> None:
    for rec in _records(study).values():
        assert TrialRecord.model_validate_json(rec.model_dump_json()) == rec
    with pytest.raises(ValueError):
        TrialRecord(number=0, tier="t", kind="explore", state="COMPLETE", typo=1)
    with pytest.raises(ValueError):
        TrialRecord(number=0, tier="t", kind="explore", state="DONE")


def test_a_verification_record_has_its_prediction() -> None:
    s = optuna.create_study(directions=["maximize"])
    predicted = _evaluation(1200.0).best
    ev = _evaluation(1000.0)
    ev.fidelity = "live"
    _run(s, 64, ev, verifies=3, predicted=predicted)
    rec = TrialRecord.from_trial(s.trials[0], "batch", "verify")
    assert rec.kind == "verify" and rec.verifies == 3 and rec.fidelity == "live"
    assert rec.predicted == ProbePoint.model_validate(predicted)
    row = trial_row(rec)
    assert row["predicted_load"] == 16 and row["predicted_output_tok_s_per_gpu"] == 1200.0
    assert row["constraint_memory"] == 0.0 and row["param_seqs"] == 64
    assert not any(isinstance(v, str) and v.startswith("{") for v in row.values())
    assert [p["probe"] for p in point_rows(rec)] == [0, 1]


def test_a_probe_point_ignores_fields_of_other_versions() -> None:
    p = ProbePoint.model_validate({"load": 4, "feasible": True, "usable": True,
                                   "ttft_ms_p95": 12.0})
    assert p.load == 4.0 and p.ttft_ms_p90 is None


def _rec(number: int, value: float | None, status: Any = "complete", state: Any = "COMPLETE",
         seqs: int | None = None) -> TrialRecord:
    return TrialRecord(number=number, tier="batch", kind="explore", state=state,
                       status=status, values=None if value is None else [value],
                       deployment=_deployment(seqs if seqs is not None else number))


def test_the_ranking_is_feasible_best_first_one_per_deployment() -> None:
    records = [_rec(0, 900.0, seqs=16), _rec(1, 0.0, "infeasible"),
               _rec(2, None, "failed", "FAIL"), _rec(3, 1200.0, seqs=64),
               _rec(4, 900.0, seqs=16),          # the same deployment as 0: left out
               _rec(5, 900.0, seqs=32),          # ties with 0: after it (higher number)
               _rec(6, 2000.0, None, "RUNNING"),  # not finished
               _rec(7, 1500.0, "infeasible")]     # a value, but it missed the SLA
    assert [r.number for r in rank_candidates(records)] == [3, 0, 5]
    assert [r.number for r in rank_candidates(reversed(records))] == [3, 0, 5]
    assert rank_candidates([]) == []


def test_the_tuner_and_the_report_rank_alike(study: optuna.Study) -> None:
    records = _records(study)
    order = [r.number for r in rank_candidates(records.values())]
    assert order == [3, 0, 5]
    assert [t.number for t in candidates(study, 2)] == order[:2]
    assert [t.number for t in candidates(study, 10)] == order
    record = StudyRecord(Path("."), "memory", SWEEP_SPEC, SWEEP_SPEC.slas(),
                         list(records.values()))
    assert [c.trial for c in ranked(record, "batch")] == order


def test_the_study_tables_hold_no_json(study: optuna.Study) -> None:
    record = StudyRecord(Path("."), "memory", SWEEP_SPEC, SWEEP_SPEC.slas(),
                         list(_records(study).values()))
    t = record.trials
    assert len(t) == 7 and "deployment" not in t and "constraints" not in t
    for column in t.columns[t.dtypes == object]:
        assert not t[column].map(lambda v: isinstance(v, str) and v[:1] in "{[").any(), column
    assert len(record.points) == 2 * 5  # two probes per measured trial
    assert json.loads(t.to_json())  # every cell is a plain value
