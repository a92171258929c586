"""When a trial cannot beat the tier's best so far: the rule that cuts its load search short.

The value of a trial is its throughput per GPU at the highest load that meets the SLA. Where
throughput per GPU grows with the load, a probe that misses the SLA bounds from above what any
lower load can give: once that bound, raised by `CUT_MARGIN`, is below the incumbent, no
further probe can make the trial the best, and the search stops (the trial is pruned). The same
rule cuts a recorded full evaluation (`cut_short`), for benchmarks that replay a ground truth.

It is a heuristic, off by default (`search.cut_short`): past the SLA boundary a replay's
throughput can fall as queues grow (multi-turn prefix traffic: a configuration worth 1.5x the
throughput of one of its missed probes), and there the rule cuts configurations that would
have won. tests/benchmarks/bench_search.py prints, per tier, the largest such ratio and how
many configurations the margin would cut wrongly. Full evaluations never depend on this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamo_bench.tune.evaluate import Evaluation

#: The share by which a probe's throughput is raised before it is compared with the incumbent:
#: it covers throughput that dips, rather than grows, as the load rises towards the SLA
#: boundary (not the larger falls of an overloaded replay; see above).
CUT_MARGIN = 0.10


def cannot_beat(value: float | None, incumbent: float | None) -> bool:
    """Whether a probe that misses the SLA with throughput per GPU `value` shows that no lower
    load can beat `incumbent` (`CUT_MARGIN`)."""
    return incumbent is not None and incumbent > 0 and \
        float(value or 0.0) * (1.0 + CUT_MARGIN) < incumbent


def cut_reason(point: dict[str, Any], incumbent: float) -> str:
    return (f"cut short at concurrency {point['load']:g}: it misses the SLA there with "
            f"{float(point['output_tok_s_per_gpu'] or 0.0):.4g} tok/s/GPU, and no lower load "
            f"can beat the best so far ({incumbent:.4g})")


def cut_short(ev: Evaluation, incumbent: float | None) -> Evaluation:
    """`ev` as a search given `incumbent` would have ended: its probes up to the first one that
    `cannot_beat` it (the search is deterministic given its probes' results). For evaluations
    recorded without an incumbent (benchmarks replaying a ground truth)."""
    from dynamo_bench.tune.evaluate import Evaluation

    if ev.status not in ("complete", "infeasible") or incumbent is None:
        return ev
    for i, pt in enumerate(ev.points):
        if pt["usable"] and not pt["feasible"] and cannot_beat(pt["output_tok_s_per_gpu"],
                                                                incumbent):
            points = ev.points[:i + 1]
            fine = [q for q in points if q["usable"] and q["feasible"] and q["load"] < pt["load"]]
            best = max(fine, key=lambda q: q["load"], default=None)
            return Evaluation("pruned", ev.fidelity, reason=cut_reason(pt, incumbent),
                              points=points, best=best, limited_by="cut",
                              elapsed_s=ev.elapsed_s, gpu_hours=ev.gpu_hours)
    return ev
