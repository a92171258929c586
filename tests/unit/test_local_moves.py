"""The tuner's local moves: neighbours in the space, and the move after a re-proposal."""

from __future__ import annotations

import optuna
import pytest

from dynamo_bench.tune.local import Evaluated, deployment_key
from dynamo_bench.tune.space import (
    deployment_for,
    enumerate_params,
    knobs_from_params,
    neighbours,
    parse_disagg_label,
    parse_layout,
    suggest_params,
)
from dynamo_bench.tune.sweep_file import load_sweep

SWEEP = load_sweep("sweeps/bench/samplers.yaml")


def _key(params: dict) -> str:
    spec = deployment_for(SWEEP, knobs_from_params(SWEEP, params))
    return deployment_key(spec.model_dump(mode="json", exclude_none=True))


def test_neighbours_change_one_parameter_by_one_step() -> None:
    every = list(enumerate_params(SWEEP))
    keys = {_key(p) for p in every}
    for params in every[::37]:
        for n in neighbours(SWEEP, params):
            assert _key(n) in keys  # a configuration of the space
            assert n["mode"] == params["mode"]
            changed = [k for k in set(n) | set(params) if n.get(k) != params.get(k)]
            assert len(changed) >= 1
            if "router.mode" not in changed:
                assert len(changed) == 1, (params, n)
            name = changed[0]
            if name == "agg.layout":
                a, b = parse_layout(params[name]), parse_layout(n[name])
                assert (abs(a.replicas - b.replicas) == 1 and (a.tp, a.pp) == (b.tp, b.pp)) \
                    or a.replicas == b.replicas or a.gpus == b.gpus
            if name.endswith("max_num_seqs"):  # the next value either way, or an end
                values = sorted({p[name] for p in every if name in p})
                j = values.index(n[name])
                assert abs(j - values.index(params[name])) == 1 or j in (0, len(values) - 1)


def test_a_disagg_move_changes_one_side() -> None:
    params = {"mode": "disagg", "disagg.layout": "P 2x tp1 + D 1x tp4",
              "enable_prefix_caching": False, "decode.max_num_seqs": 32, "router.mode": "kv"}
    layouts = {n["disagg.layout"] for n in neighbours(SWEEP, params)
               if n["disagg.layout"] != params["disagg.layout"]}
    assert layouts  # some layout moves
    p0, d0 = parse_disagg_label(params["disagg.layout"])
    for label in layouts:
        p, d = parse_disagg_label(label)
        assert (p == p0) != (d == d0)  # exactly one side moved


def _finished(study: optuna.Study, sweep, params: dict, value: float) -> str:
    """A finished trial of `params` written as the tuner writes one; returns its key."""
    study.enqueue_trial(params)
    trial = study.ask()
    knobs = suggest_params(trial, sweep)
    spec = deployment_for(sweep, knobs)
    deployment = spec.model_dump(mode="json", exclude_none=True)
    for k, v in {"evaluation": {}, "fidelity": "replay", "status": "complete",
                 "deployment": deployment}.items():
        trial.set_user_attr(k, v)
    study.tell(trial, value)
    return deployment_key(deployment)


def test_the_next_move_is_an_unexplored_neighbour_of_the_best() -> None:
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    every = list(enumerate_params(SWEEP))
    best, other = every[10], every[400]
    _finished(study, SWEEP, other, 10.0)
    _finished(study, SWEEP, best, 100.0)
    seen = Evaluated(SWEEP, "replay", seed=0)
    seen.sync(study.trials)
    assert seen.twin(study.trials[1].user_attrs["deployment"]) == 1
    moves = {_key(n) for n in neighbours(SWEEP, best)}
    first = seen.next_move(study.trials)
    assert first is not None and _key(first) in moves
    second = seen.next_move(study.trials)  # a queued move is not proposed twice
    assert second is not None and _key(second) != _key(first) and _key(second) in moves


@pytest.mark.parametrize("seed", [0, 1])
def test_moves_cover_a_finite_space_once_then_stop(seed: int) -> None:
    small = SWEEP.model_copy(update={"space": SWEEP.space.model_copy(update={
        "mode": ["agg"], "tp": [1, 2], "max_num_seqs": [16, 64], "max_num_batched_tokens": [2048],
        "enable_prefix_caching": [True], "router": SWEEP.space.router.model_copy(
            update={"mode": ["kv"]})})})
    every = list(enumerate_params(small))
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seen = Evaluated(small, "replay", seed=seed)
    params = every[0]
    keys = []
    while params is not None:
        keys.append(_finished(study, small, params, float(len(keys))))
        seen.sync(study.trials)
        params = seen.next_move(study.trials)
    assert len(keys) == len(set(keys)) == len(every)


def test_start_points_take_both_modes_and_follow_the_explorers_estimate(tmp_path) -> None:
    """The closed form proposes the best layouts of each mode; the explorer's estimate orders
    them (here one that prefers agg by construction), so a mode the closed form ranks low
    can still lead; the closed form's own favourite of each mode follows the estimate's
    best."""
    from dynamo_bench.tune.evaluate import ReplayEvaluator
    from dynamo_bench.tune.tuner import TuneOptions, Tuner

    class PrefersAgg(ReplayEvaluator):
        asked: list[str] = []
        specs: list = []

        def estimates(self, specs, sla):  # type: ignore[no-untyped-def]
            PrefersAgg.asked, PrefersAgg.specs = [s.mode for s in specs], specs
            return [2.0 + i * 1e-3 if s.mode == "agg" else 1.0 for i, s in enumerate(specs)]

    sweep = SWEEP.model_copy(update={"search": SWEEP.search.model_copy(
        update={"start_points": 3})})
    tuner = Tuner(sweep, tmp_path / "s", options=TuneOptions(
        explore_evaluator=PrefersAgg(sweep.workload, sweep.load)))
    points = tuner._start_points(sweep.slas()["interactive"])
    assert set(PrefersAgg.asked) == {"agg", "disagg"}  # both modes were candidates
    assert len(PrefersAgg.asked) <= 4 * 3
    assert [p["mode"] for p in points] == ["agg"] * 4 + ["disagg"]
    # highest estimate first (the later an agg candidate, the higher it scored), then the
    # closed form's first candidate of each mode, which the estimate ranked lower
    agg = [i for i, m in enumerate(PrefersAgg.asked) if m == "agg"]
    disagg = PrefersAgg.asked.index("disagg")
    expected = [deployment_key(PrefersAgg.specs[i].model_dump(mode="json", exclude_none=True))
                for i in [*agg[::-1][:3], agg[0], disagg]]
    assert [_key(p) for p in points] == expected


def test_local_turn_comes_every_few_distinct_evaluations_once_nothing_is_queued() -> None:
    from optuna.trial import TrialState, create_trial

    from dynamo_bench.tune.tuner import LOCAL_EVERY, _local_turn

    def done(n: int, **attrs) -> list:  # type: ignore[no-untyped-def]
        return [create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs=dict(attrs))
                for _ in range(n)]

    assert _local_turn(done(LOCAL_EVERY - 1))
    assert not _local_turn(done(LOCAL_EVERY))
    assert not _local_turn(done(LOCAL_EVERY - 2))
    # duplicates are not evaluations: they do not advance the turn
    assert not _local_turn(done(LOCAL_EVERY - 2) + done(1, duplicate_of=0))
    # a queued trial (a start point, a move) goes first
    waiting = optuna.trial.FrozenTrial(
        number=9, state=TrialState.WAITING, value=None, datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
        intermediate_values={}, trial_id=9)
    assert not _local_turn(done(LOCAL_EVERY - 1) + [waiting])


def test_a_study_interleaves_local_moves_from_its_best_trials(tmp_path) -> None:
    """Every LOCAL_EVERY distinct evaluations the next trial is an unexplored neighbour of the
    best feasible trials, whether or not the sampler repeated itself."""
    from dynamo_bench.tune.storage import open_storage
    from dynamo_bench.tune.tuner import TuneOptions, Tuner, study_name

    sweep = SWEEP.model_copy(update={
        "search": SWEEP.search.model_copy(update={"start_points": 0}),
        "budget": SWEEP.budget.model_copy(update={"trials": 13,
                                                  "patience": None}),
        "workload": SWEEP.workload.model_copy(update={"request_count": 48})})
    tier = "interactive"
    tuner = Tuner(sweep, tmp_path / "s", options=TuneOptions(verify=False, peer=False))
    tuner.run()
    study = optuna.load_study(study_name=study_name(sweep.name, tier),
                              storage=open_storage(tuner.url))
    trials = sorted(study.trials, key=lambda t: t.number)
    moves = [t for i, t in enumerate(trials) if t.user_attrs.get("local_move")
             and i > 0 and "duplicate_of" not in trials[i - 1].user_attrs]
    assert moves, [(t.number, t.user_attrs.get("local_move")) for t in trials]
    for m in moves:
        earlier = [t for t in trials if t.number < m.number and t.params]
        assert any(m.params in neighbours(sweep, t.params) for t in earlier), m.params


def test_closed_form_start_points_leave_the_batch_to_the_load_search() -> None:
    """Each role's max_num_seqs in a start point is the largest of the space: the load search
    sets the batch, and a cap at the coarse guess held the load below the SLA boundary."""
    from dynamo_bench.perf.arch import ModelArch
    from dynamo_bench.tune.guess import start_points

    sla = SWEEP.slas()["interactive"]
    guesses = start_points(SWEEP, sla, ModelArch.of(SWEEP.deployment["model"]), None)
    assert {g.mode for g in guesses} == {"agg", "disagg"}
    every = list(enumerate_params(SWEEP))
    for g in guesses:
        for name, value in g.params.items():
            if name.endswith("max_num_seqs"):
                assert value == max(p[name] for p in every if name in p), (name, g)
        assert any(k.endswith("max_num_seqs") for k in g.params), g
    assert any(g.batch < 256 for g in guesses)  # the old cap would have been below the top


def test_a_batch_limit_moves_to_the_next_value_or_an_end_of_its_list() -> None:
    """A limit's effect can be flat over one step and jump at the next: from the lowest value
    of a three-value list, both other values are one move away."""
    params = {"mode": "agg", "agg.layout": "1x tp8", "enable_prefix_caching": True,
              "agg.max_num_seqs": 16, "agg.max_num_batched_tokens": 2048, "router.mode": "kv"}
    seqs = {n["agg.max_num_seqs"] for n in neighbours(SWEEP, params)
            if n["agg.max_num_seqs"] != 16}
    assert seqs == {64, 256}
    params["agg.max_num_seqs"] = 64
    assert {n["agg.max_num_seqs"] for n in neighbours(SWEEP, params)} == {16, 64, 256}
