"""Cutting a trial short once it cannot beat the incumbent (Optuna pruning of the load search).

A probe that misses the SLA bounds what any lower load can give; once that bound (raised by
`CUT_MARGIN`) is below the tier's best so far, the trial is pruned. The answer must not change:
on a space small enough to evaluate entirely, the best found with cutting equals the best
found without, and fewer probes are run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dynamo_bench import api
from dynamo_bench.tune.cut import CUT_MARGIN, cannot_beat, cut_short
from dynamo_bench.tune.evaluate import Evaluation, ReplayEvaluator
from dynamo_bench.tune.names import study_name
from dynamo_bench.tune.tuner import TuneOptions, Tuner
from tests.unit.test_tune import sweep_with


def _point(load: float, value: float, feasible: bool, usable: bool = True) -> dict:
    return {"load": load, "output_tok_s_per_gpu": value, "feasible": feasible,
            "usable": usable}


def test_the_bound_has_a_margin() -> None:
    assert cannot_beat(100.0, 100.0 * (1 + CUT_MARGIN) + 1)
    assert not cannot_beat(100.0, 100.0 * (1 + CUT_MARGIN) - 1)
    assert not cannot_beat(100.0, None) and not cannot_beat(0.0, 0.0)


def test_cut_short_replays_the_search_as_it_would_have_ended() -> None:
    ev = Evaluation("complete", "replay", points=[
        _point(32, 300.0, True), _point(35, 320.0, False), _point(33, 310.0, True),
        _point(34, 315.0, False)], best=_point(33, 310.0, True))
    assert cut_short(ev, None) is ev and cut_short(ev, 330.0) is ev  # 320 * 1.1 > 330
    cut = cut_short(ev, 400.0)
    assert cut.status == "pruned" and cut.limited_by == "cut"
    assert [p["load"] for p in cut.points] == [32, 35]
    assert cut.best["load"] == 32  # a lower bound
    assert "concurrency 35" in cut.reason and "400" in cut.reason
    # a search that misses the SLA everywhere is cut at its first probe (no walk down)
    bad = Evaluation("infeasible", "replay", points=[_point(8, 50.0, False),
                                                     _point(4, 30.0, False)])
    assert [p["load"] for p in cut_short(bad, 400.0).points] == [8]
    assert cut_short(bad, 400.0).best is None
    # a failed one (unusable measurement) is not the search's to cut
    failed = Evaluation("failed", "replay", points=[_point(8, 50.0, False, usable=False)])
    assert cut_short(failed, 400.0) is failed


class _Counting(ReplayEvaluator):
    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.probes = 0

    def evaluate(self, spec, sla, out_dir, incumbent=None):  # type: ignore[no-untyped-def]
        ev = super().evaluate(spec, sla, out_dir, incumbent)
        self.probes += len(ev.points)
        return ev


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[api.TuningStudy, int]]:
    """The same exhaustive study with and without cutting short."""
    space = {"mode": ["agg"], "tp": [1, 2], "max_num_seqs": [8, 16, 64, 256],
             "router": {"mode": ["kv", "round-robin"]}}
    out = {}
    for cut in (False, True):
        sweep = sweep_with(space=space, budget__trials=16, budget__patience=None,
                           search={"start_points": 0, "cut_short": cut},
                           sla={"batch": "ttft_ms.p90<=2000,itl_ms.p90<=40"})
        ev = _Counting(sweep.workload, sweep.load, store=None)
        folder = tmp_path_factory.mktemp(f"cut-{cut}") / "s"
        Tuner(sweep, folder, options=TuneOptions(explore_evaluator=ev)).run()
        out[cut] = (api.load_study(folder), ev.probes)
    return out


def test_cutting_short_keeps_the_answer_and_spends_fewer_probes(both) -> None:  # type: ignore[no-untyped-def]
    (full, full_probes), (cut, cut_probes) = both[False], both[True]
    best = {k: s.answers().iloc[0] for k, s in (("full", full), ("cut", cut))}
    assert best["cut"]["config"] == best["full"]["config"]
    assert best["cut"]["predicted_tok_s_per_gpu"] == pytest.approx(
        best["full"]["predicted_tok_s_per_gpu"])
    t = cut.trials()
    pruned = t[t["status"] == "pruned"]
    assert len(pruned) > 0 and (pruned["state"] == "PRUNED").all()
    assert pruned["reason"].str.startswith("cut short at concurrency").all()
    assert cut_probes < full_probes
    assert (full.trials()["status"] != "pruned").all()


def test_pruned_trials_count_against_the_budget_and_are_kept_in_optuna(both) -> None:  # type: ignore[no-untyped-def]
    cut, _ = both[True]
    study = optuna.load_study(study_name=study_name("unit", "batch"),
                              storage=f"sqlite:///{cut.folder / 'study.db'}")
    counted = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(counted) == 16  # the whole space, pruned trials included
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned)
    cut.report(html=False)
    summary = (Path(cut.folder) / "best" / "batch" / "summary.md").read_text()
    assert "cut short: they could not beat the best so far" in summary
