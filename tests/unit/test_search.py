"""The load search (bracket, then bisect) on synthetic systems with a known boundary."""

from __future__ import annotations

import pytest

from dynamo_bench.loadgen.search import Probe, probe_budget, search_down, search_max_load


def system(boundary: float, saturates_at: float = float("inf")):
    calls: list[float] = []

    def evaluate(x: float) -> Probe[float]:
        calls.append(x)
        return Probe(x, feasible=x <= boundary, usable=x < saturates_at, result=x)

    return evaluate, calls


@pytest.mark.parametrize("boundary", [1, 2, 3, 5, 11, 37, 100, 255])
def test_finds_the_exact_integer_boundary(boundary: int) -> None:
    evaluate, calls = system(boundary)
    out = search_max_load(evaluate, start=1, limit=256, max_probes=20)
    assert out.limited_by == "sla"
    assert out.best is not None and out.best.load == boundary and out.best.feasible
    assert out.above is not None and out.above.load == boundary + 1 and not out.above.feasible
    assert len(calls) <= 2 * 9  # doubling plus bisection: logarithmic
    assert len(set(calls)) == len(calls)  # no load measured twice


@pytest.mark.parametrize("first_step", [None, 0.05, 0.3])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8, 31, 32, 33, 100, 255, 256, 512, 1000])
def test_converges_from_any_first_guess_and_limit_within_the_derived_budget(
        limit, first_step) -> None:
    """Every boundary (none feasible, inside, at or above the limit), every first guess, every
    first step: the search ends on the SLA, the limit or the floor, exactly, within
    `probe_budget`."""
    starts = sorted({1, 2, max(1, limit // 3), limit // 2 or 1, limit, 2 * limit, 5, 19})
    for boundary in sorted({0, 1, 2, limit // 2, limit - 1, limit, limit + 3, 20, 21}):
        for start in starts:
            evaluate, calls = system(boundary)
            out = search_max_load(evaluate, start=start, limit=limit, first_step=first_step)
            budget = probe_budget(start=start, limit=limit, first_step=first_step)
            assert len(calls) <= budget, (boundary, start, limit)
            assert out.limited_by != "budget"
            assert len(set(calls)) == len(calls)
            if boundary < 1:
                assert out.limited_by == "infeasible" and out.best is None
            elif boundary >= limit:
                assert out.limited_by == "limit" and out.best.load == limit
            else:
                assert out.limited_by == "sla" and out.best.load == boundary
                assert out.above.load == boundary + 1


def test_starts_at_the_guess_and_needs_few_probes_when_it_is_right() -> None:
    evaluate, calls = system(37)
    out = search_max_load(evaluate, start=36, limit=512)
    assert calls[0] == 36 and out.best.load == 37
    assert len(calls) <= 8


def test_a_small_first_step_brackets_a_close_guess_in_few_probes() -> None:
    """From a guess 2% under the boundary a 5% first step brackets it at once: 4 probes where
    doubling needs 9."""
    for first_step, most in ((0.05, 4), (None, 9)):
        evaluate, calls = system(100)
        out = search_max_load(evaluate, start=98, limit=512, first_step=first_step)
        assert out.best.load == 100 and out.limited_by == "sla"
        assert len(calls) <= most, (first_step, calls)
    evaluate, calls = system(100)
    search_max_load(evaluate, start=98, limit=512, first_step=0.05)
    assert calls[:2] == [98, 102]


def test_rate_search_to_relative_tolerance() -> None:
    evaluate, _ = system(7.3)
    out = search_max_load(evaluate, start=0.5, limit=100, integer=False, rel_tol=0.02,
                          max_probes=30)
    assert out.best is not None and out.above is not None
    assert out.best.load <= 7.3 < out.above.load
    assert out.above.load - out.best.load <= 0.02 * out.best.load


def test_nothing_feasible() -> None:
    evaluate, calls = system(0.5)
    out = search_max_load(evaluate, start=1, limit=64)
    assert out.best is None and out.limited_by == "infeasible" and calls == [1]


def test_limit_reached_while_feasible() -> None:
    evaluate, calls = system(1000)
    out = search_max_load(evaluate, start=1, limit=48)
    assert out.limited_by == "limit" and out.best is not None and out.best.load == 48
    assert calls == [1, 2, 4, 8, 16, 32, 48]


def test_stops_when_the_client_saturates() -> None:
    evaluate, calls = system(100, saturates_at=20)
    out = search_max_load(evaluate, start=1, limit=256)
    assert out.limited_by == "client"
    assert out.best is not None and out.best.load == 16
    assert out.above is not None and out.above.load == 32 and not out.above.usable


def test_budget() -> None:
    evaluate, calls = system(37)
    out = search_max_load(evaluate, start=1, limit=256, max_probes=7)
    assert out.limited_by == "budget" and len(calls) == 7
    assert out.best is not None and out.best.feasible


# -- search_down: checking a predicted load ----------------------------------------------------

def _boundary(b: float):
    calls: list[float] = []

    def evaluate(x: float) -> Probe[float]:
        calls.append(x)
        return Probe(x, x <= b, True, x)

    return evaluate, calls


def test_search_down_confirms_a_good_prediction_with_one_probe() -> None:
    ev, calls = _boundary(16)
    out = search_down(ev, high=16)
    assert out.limited_by == "limit" and out.best.load == 16 and calls == [16]


def test_search_down_walks_to_the_boundary() -> None:
    ev, calls = _boundary(11)
    out = search_down(ev, high=32, max_probes=8)
    assert out.best.load == 11 and out.above.load == 12 and out.limited_by == "sla"
    assert calls[:3] == [32, 16, 8]


def test_search_down_gives_up_within_budget_or_at_the_floor() -> None:
    ev, calls = _boundary(0)
    out = search_down(ev, high=8, low=1, max_probes=10)
    assert out.best is None and out.limited_by == "infeasible" and calls == [8, 4, 2, 1]
    ev, calls = _boundary(3)
    out = search_down(ev, high=64, max_probes=3)
    assert out.best is None and out.limited_by == "budget" and len(calls) == 3


def test_give_up_ends_the_search_at_the_probe_it_accepts() -> None:
    """`give_up` is asked of each probe that misses the SLA: accepted, the search ends there,
    its best being the highest feasible load measured before it."""
    evaluate, calls = system(40)
    asked: list[float] = []

    def give_up(p: Probe[float]) -> bool:
        asked.append(p.load)
        return True

    out = search_max_load(evaluate, start=32, limit=512, first_step=0.1, give_up=give_up)
    assert out.limited_by == "cut"
    assert asked == [calls[-1]] and not out.above.feasible and out.above.load == calls[-1]
    assert out.best is not None and out.best.load == max(x for x in calls if x <= 40)
    # refused every time, the search is the plain one
    evaluate, calls = system(40)
    out = search_max_load(evaluate, start=32, limit=512, first_step=0.1,
                          give_up=lambda p: asked.append(p.load) or False)
    assert out.limited_by == "sla" and out.best.load == 40


def test_a_first_probe_given_up_leaves_no_best() -> None:
    evaluate, calls = system(10)
    out = search_max_load(evaluate, start=64, limit=512, give_up=lambda p: True)
    assert out.limited_by == "cut" and out.best is None and calls == [64]
