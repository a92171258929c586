"""Find the highest load that meets an SLA with few measurements: bracket, then bisect.

Pure: the measurement is a function passed in, so the same search runs on live AIPerf runs
and on the offline replay. The load is assumed to make latency worse as it grows (the SLA holds
below some boundary and fails above it).

`search_max_load` starts at a first guess (the performance model's estimate of the boundary),
steps up or down until the boundary is bracketed (or the limit or the floor is reached), then
bisects to adjacent concurrencies (or to `rel_tol` for rates). The steps double the load, or,
from a trusted guess (`first_step`), start small and grow: x(1 + s), then s doubles each step up
to a doubling, so a good guess is bracketed with one or two probes. Its probe budget is derived
from the floor, the first guess, the limit and the first step (`probe_budget`): the worst case of
exactly this procedure, so the search always ends on the SLA, the limit, the floor or an
unusable measurement, never on the budget. A caller that only needs to know whether the result
can beat a value passes `give_up`: asked of every probe that misses the SLA, True ends the
search there ("cut").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Probe(Generic[T]):
    """One measurement: the load, whether it met the SLA, whether it can be trusted at all
    (False: the load client saturated or the run failed), and what was measured."""

    load: float
    feasible: bool
    usable: bool
    result: T


@dataclass
class SearchOutcome(Generic[T]):
    """The boundary found and every probe, in the order they ran.

    `best` is the highest feasible load measured, `above` the lowest infeasible (or unusable)
    load above it. `limited_by` says why the search stopped: "sla" (bracketed the boundary),
    "limit" (the highest allowed load still meets the SLA), "client" (measurements stopped being
    trustworthy before the boundary), "budget" (ran out of probes), "infeasible" (even the
    lowest load fails), or "cut" (`give_up` said so of the probe in `above`; `best`, if any,
    is the highest feasible load measured until then).
    """

    probes: list[Probe[T]] = field(default_factory=list)
    best: Probe[T] | None = None
    above: Probe[T] | None = None
    limited_by: Literal["sla", "limit", "client", "budget", "infeasible", "cut"] = "sla"


class _Cut(Exception):
    """Raised inside a search when `give_up` accepts a probe; caught by `search_max_load`."""


def _recorder(evaluate: Callable[[float], Probe[T]], out: SearchOutcome[T],
              give_up: Callable[[Probe[T]], bool] | None = None
              ) -> Callable[[float], Probe[T]]:
    """`evaluate` that also appends each probe to `out.probes` (and raises `_Cut` when
    `give_up` accepts a usable probe that misses the SLA)."""
    def run(x: float) -> Probe[T]:
        p = evaluate(x)
        out.probes.append(p)
        if give_up is not None and p.usable and not p.feasible and give_up(p):
            raise _Cut
        return p

    return run


def _growth(first_step: float | None) -> list[float]:
    """The step factors of a bracketing walk: 1 + s, 1 + 2s, ... then doublings (s >= 1)."""
    out, s = [], first_step if first_step else 1.0
    while s < 1.0:
        out.append(1.0 + s)
        s *= 2
    return out


def _steps_to(ratio: float, first_step: float | None) -> int:
    """Steps of the walk (`_growth`, then doublings) to cover a load ratio >= 1."""
    n, covered = 0, 1.0
    for f in _growth(first_step):
        if covered >= ratio:
            return n
        covered, n = covered * f, n + 1
    return n + (math.ceil(math.log2(ratio / covered)) if ratio > covered else 0)


def probe_budget(*, start: float, limit: float, low: float = 1, integer: bool = True,
                 rel_tol: float = 0.02, first_step: float | None = None) -> int:
    """The most probes `search_max_load` can need from `start` between `low` and `limit`: one
    first probe, the steps up (or down) to bracket, one more for each integer step that rounds
    to no move, and the bisection of the widest bracket those can leave."""
    start = min(max(start, low), limit)
    up = _steps_to(limit / start, first_step) if limit > start else 0
    down = _steps_to(start / low, first_step) if start > low else 0
    if integer and first_step:  # a small step that rounds to no move takes one load unit
        up += len(_growth(first_step))
        down += len(_growth(first_step))
    widest = max(start, limit / 2, 1.0)  # a doubling or halving step brackets [x, 2x]
    if integer:
        bisect = math.ceil(math.log2(max(widest, 1.0))) + 1
    else:
        bisect = math.ceil(math.log2(max(1.0 / rel_tol, 1.0))) + 1
    return 1 + max(up, down) + bisect + 1


def search_max_load(evaluate: Callable[[float], Probe[T]], *, start: float, limit: float,
                    low: float | None = None, integer: bool = True,
                    max_probes: int | None = None, rel_tol: float = 0.02,
                    first_step: float | None = None,
                    give_up: Callable[[Probe[T]], bool] | None = None) -> SearchOutcome[T]:
    """The highest load in [`low`, `limit`] meeting the SLA, from a first guess `start`.

    Steps up from `start` while the SLA holds (up to `limit`), or down while it fails (down to
    `low`), then bisects the bracket to adjacent integers (`integer=True`) or to `rel_tol` of
    its lower end. A step doubles (halves) the load; with `first_step` s in (0, 1) the first
    step is x(1 + s) and s doubles with each step, for a guess that is probably close.
    `low` defaults to 1 for integers and to `start` / 64 for rates. `max_probes` defaults to
    `probe_budget(...)`, which this procedure never exceeds. `give_up(probe)`, asked of each
    usable probe that misses the SLA, ends the search there when True (`limited_by` "cut").
    """
    if low is None:
        low = 1.0 if integer else start / 64
    out: SearchOutcome[T] = SearchOutcome()
    run = _recorder(evaluate, out, give_up)
    try:
        return _max_load(run, out, start=start, limit=limit, low=low, integer=integer,
                         max_probes=max_probes, rel_tol=rel_tol, first_step=first_step)
    except _Cut:
        above = out.probes[-1]
        fine = [p for p in out.probes if p.usable and p.feasible and p.load < above.load]
        out.best = max(fine, key=lambda p: p.load, default=None)
        out.above, out.limited_by = above, "cut"
        return out


def _max_load(run: Callable[[float], Probe[T]], out: SearchOutcome[T], *, start: float,
              limit: float, low: float, integer: bool, max_probes: int | None,
              rel_tol: float, first_step: float | None) -> SearchOutcome[T]:
    """`search_max_load` without the cut (`run` records the probes and may raise `_Cut`)."""
    budget = max_probes or probe_budget(start=start, limit=limit, low=low, integer=integer,
                                        rel_tol=rel_tol, first_step=first_step)
    factors = iter(_growth(first_step))

    def snap(x: float) -> float:
        return float(max(low, min(limit, math.floor(x) if integer else x)))

    def step(x: float, up: bool) -> float:
        """The next load of the walk from `x` (at least one unit away for integers)."""
        f = next(factors, 2.0)
        y = snap(x * f if up else x / f)
        if integer and y == x:
            y = snap(x + 1 if up else x - 1)
        return y

    p = run(snap(start))
    if not p.usable:
        out.limited_by, out.above = "client", p
        return out
    lo: Probe[T] | None = p if p.feasible else None
    hi: Probe[T] | None = None if p.feasible else p
    if lo is None:
        assert hi is not None
        lo, hi = _walk_down(run, out, hi, low=low, budget=budget, step=step)
        if lo is None:
            return out
    while hi is None:  # step up while the SLA holds, up to the limit
        assert lo is not None
        if lo.load >= limit:
            out.best, out.limited_by = lo, "limit"
            return out
        if len(out.probes) >= budget:
            out.best, out.limited_by = lo, "budget"
            return out
        p = run(step(lo.load, up=True))
        if not p.usable:
            out.best, out.above, out.limited_by = lo, p, "client"
            return out
        if p.feasible:
            lo = p
        else:
            hi = p
    return _bisect(run, out, lo, hi, integer=integer, rel_tol=rel_tol, max_probes=budget)


def _bisect(run: Callable[[float], Probe[T]], out: SearchOutcome[T], lo: Probe[T],
            hi: Probe[T], *, integer: bool, rel_tol: float, max_probes: int
            ) -> SearchOutcome[T]:
    """Narrow a bracket (`lo` feasible, `hi` not) to adjacent integers or `rel_tol`."""
    if hi.load <= lo.load:  # a noisy measurement: infeasible below a feasible one
        out.best, out.above, out.limited_by = lo, hi, "sla"
        return out
    def narrow_enough(a: float, b: float) -> bool:
        return b - a <= 1 if integer else (b - a) <= rel_tol * max(a, 1e-9)

    while not narrow_enough(lo.load, hi.load):
        if len(out.probes) >= max_probes:
            out.best, out.above, out.limited_by = lo, hi, "budget"
            return out
        mid = (lo.load + hi.load) / 2
        p = run(math.floor(mid) if integer else mid)
        if not p.usable:
            out.best, out.above, out.limited_by = lo, p, "client"
            return out
        if p.feasible:
            lo = p
        else:
            hi = p
    out.best, out.above, out.limited_by = lo, hi, "sla"
    return out

def _walk_down(run: Callable[[float], Probe[T]], out: SearchOutcome[T], hi: Probe[T], *,
               low: float, budget: int, step: Callable[[float, bool], float]
               ) -> tuple[Probe[T] | None, Probe[T]]:
    """Step down from an infeasible `hi` until a load meets the SLA: (that probe, the lowest
    infeasible one above it). (None, hi) when the floor fails too, the probes run out or a
    probe is unusable; `out` then says which."""
    while True:
        if hi.load <= low:
            out.above, out.limited_by = hi, "infeasible"
            return None, hi
        if len(out.probes) >= budget:
            out.above, out.limited_by = hi, "budget"
            return None, hi
        p = run(step(hi.load, False))
        if not p.usable:
            out.above, out.limited_by = p, "client"
            return None, hi
        if p.feasible:
            return p, hi
        hi = p


def search_down(evaluate: Callable[[float], Probe[T]], *, high: float, low: float = 1,
                integer: bool = True, max_probes: int = 4) -> SearchOutcome[T]:
    """Confirm `high` meets the SLA, or walk down to the highest load that does.

    For checking a prediction: the first probe is `high`; if it fails, the load is halved until
    one meets the SLA (not below `low`), then the gap is bisected while probes remain.
    `limited_by` is "limit" when `high` itself holds, "sla" when bracketed, "budget" when the
    probes ran out, "infeasible" when even `low` fails, "client" when a probe is unusable.
    """
    out: SearchOutcome[T] = SearchOutcome()
    run = _recorder(evaluate, out)

    p = run(high)
    if not p.usable:
        out.limited_by, out.above = "client", p
        return out
    if p.feasible:
        out.best, out.limited_by = p, "limit"
        return out
    lo, hi = _walk_down(run, out, p, low=low, budget=max_probes, step=lambda x, up: float(
        max(low, math.floor(x / 2) if integer else x / 2)))
    if lo is None:
        return out
    return _bisect(run, out, lo, hi, integer=integer, rel_tol=0.05, max_probes=max_probes)
