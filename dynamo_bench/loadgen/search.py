"""Find the highest load that meets an SLA with few measurements: bracket, then bisect.

Pure: the measurement is a function passed in, so the same search runs on live AIPerf runs
and on the offline replay. The load is assumed to make latency worse as it grows (the SLA holds
below some boundary and fails above it).
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
    trustworthy before the boundary), "budget" (ran out of probes), or "infeasible" (even the
    lowest load fails).
    """

    probes: list[Probe[T]] = field(default_factory=list)
    best: Probe[T] | None = None
    above: Probe[T] | None = None
    limited_by: Literal["sla", "limit", "client", "budget", "infeasible"] = "sla"


def _recorder(evaluate: Callable[[float], Probe[T]], out: SearchOutcome[T]
              ) -> Callable[[float], Probe[T]]:
    """`evaluate` that also appends each probe to `out.probes`."""
    def run(x: float) -> Probe[T]:
        p = evaluate(x)
        out.probes.append(p)
        return p

    return run


def search_max_load(evaluate: Callable[[float], Probe[T]], *, start: float, limit: float,
                    integer: bool = True, max_probes: int = 12,
                    rel_tol: float = 0.05) -> SearchOutcome[T]:
    """Double the load from `start` until the SLA fails (or `limit`), then bisect.

    Bisection stops when the bracket is adjacent integers (`integer=True`) or narrower than
    `rel_tol` of the lower end.
    """
    out: SearchOutcome[T] = SearchOutcome()
    run = _recorder(evaluate, out)

    p = run(start)
    if not p.usable:
        out.limited_by, out.above = "client", p
        return out
    if not p.feasible:
        out.limited_by, out.above = "infeasible", p
        return out
    lo = p
    hi: Probe[T] | None = None
    while lo.load < limit:
        if len(out.probes) >= max_probes:
            out.best, out.limited_by = lo, "budget"
            return out
        x = min(lo.load * 2, limit)
        x = math.floor(x) if integer else x
        p = run(x)
        if not p.usable:
            out.best, out.above, out.limited_by = lo, p, "client"
            return out
        if p.feasible:
            lo = p
        else:
            hi = p
            break
    if hi is None:
        out.best, out.limited_by = lo, "limit"
        return out

    return _bisect(run, out, lo, hi, integer=integer, rel_tol=rel_tol, max_probes=max_probes)


def _bisect(run: Callable[[float], Probe[T]], out: SearchOutcome[T], lo: Probe[T],
            hi: Probe[T], *, integer: bool, rel_tol: float, max_probes: int
            ) -> SearchOutcome[T]:
    """Narrow a bracket (`lo` feasible, `hi` not) to adjacent integers or `rel_tol`."""
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
    hi, lo = p, None
    while lo is None:
        if len(out.probes) >= max_probes:
            out.above, out.limited_by = hi, "budget"
            return out
        if hi.load <= low:
            out.above, out.limited_by = hi, "infeasible"
            return out
        x = max(low, math.floor(hi.load / 2) if integer else hi.load / 2)
        p = run(x)
        if not p.usable:
            out.above, out.limited_by = p, "client"
            return out
        if p.feasible:
            lo = p
        else:
            hi = p
    return _bisect(run, out, lo, hi, integer=integer, rel_tol=0.05, max_probes=max_probes)
