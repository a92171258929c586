"""The one ranking of explored trials: which deployments are the best candidates of a tier.

The tuner verifies the first few of them live (`tuner.candidates`); the report picks its
answer among them (`report.best.ranked`, which then puts verified candidates first).
"""

from __future__ import annotations

from collections.abc import Iterable

from dynamo_bench.tune.record import TrialRecord


def rank_candidates(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The feasible trials (`TrialRecord.feasible`), best first: the highest first objective,
    ties to the lower trial number; one per distinct deployment (its best trial). Pure."""
    feasible = sorted((r for r in records if r.feasible),
                      key=lambda r: (-(r.value if r.value is not None else float("-inf")),
                                     r.number))
    seen: set[str] = set()
    out: list[TrialRecord] = []
    for r in feasible:
        if r.deployment_key not in seen:
            seen.add(r.deployment_key)
            out.append(r)
    return out
