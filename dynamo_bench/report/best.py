"""The answer per SLA tier: which deployment wins, the runner-up and why it lost.

`choose(record, tier)` is pure. A candidate verified live and still meeting the SLA beats any
unverified one; among verified candidates the higher verified throughput per GPU wins; with no
verification the highest predicted value wins (and the summary says it is unverified).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dynamo_bench.tune.records import StudyRecord


@dataclass
class Candidate:
    """One explored deployment and, if it was verified, its live row."""

    row: pd.Series
    verified: pd.Series | None

    @property
    def trial(self) -> int:
        return int(self.row["trial"])

    @property
    def predicted(self) -> float:
        return float(self.row["value"])

    @property
    def verified_ok(self) -> bool:
        return self.verified is not None and self.verified["status"] == "complete"

    @property
    def verified_value(self) -> float | None:
        if self.verified is None or pd.isna(self.verified["value"]):
            return None
        return float(self.verified["value"])

    @property
    def deployment(self) -> dict[str, Any]:
        return json.loads(self.row["deployment"])


@dataclass
class Choice:
    """The answer for one tier. `best` is None when no trial met the SLA; then `closest` is the
    infeasible trial nearest to it."""

    tier: str
    best: Candidate | None
    runner_up: Candidate | None
    why_runner_up_lost: str | None
    closest: pd.Series | None = None
    failed_verifications: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One phrase: what is known of the answer."""
        b = self.best
        if b is None:
            return "no configuration meets the SLA"
        if b.verified is not None:
            return "meets the SLA live" if b.verified_ok else str(b.verified["reason"])
        if self.failed_verifications:
            return ("not verified: live verification failed for " +
                    "; ".join(self.failed_verifications))
        return "not verified"


def ranked(record: StudyRecord, tier: str) -> list[Candidate]:
    """Feasible explored trials, one per distinct deployment, best first (see module doc)."""
    ex = record.tier_trials(tier, "explore")
    ex = ex[(ex["state"] == "COMPLETE") & (ex["status"] == "complete")]
    ex = ex.sort_values(["value", "trial"], ascending=[False, True])
    ex = ex.drop_duplicates("deployment")
    ver = record.tier_trials(tier, "verify")
    ver = ver[ver["state"].isin(["COMPLETE", "FAIL"])]
    by_target = {int(v["verifies"]): v for _, v in ver.iterrows() if pd.notna(v["verifies"])}
    cands = [Candidate(r, by_target.get(int(r["trial"]))) for _, r in ex.iterrows()]

    def key(c: Candidate) -> tuple[int, float, int]:
        if c.verified_ok:
            return (0, -(c.verified_value or 0.0), c.trial)
        if c.verified is None:
            return (1, -c.predicted, c.trial)
        return (2, -c.predicted, c.trial)  # verified and failed: last

    return sorted(cands, key=key)


def _pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.1f}%" if b else "n/a"


def why_lost(best: Candidate, other: Candidate) -> str:
    if other.verified is not None and not other.verified_ok:
        return f"it failed live verification: {other.verified['reason']}"
    if best.verified_ok and other.verified_ok:
        return (f"lower verified throughput: {other.verified_value:.1f} vs "
                f"{best.verified_value:.1f} output tok/s per GPU "
                f"({_pct(other.verified_value or 0, best.verified_value or 0)})")
    if best.verified_ok and other.verified is None:
        return (f"not verified live; predicted {other.predicted:.1f} vs "
                f"{best.predicted:.1f} output tok/s per GPU")
    if best.predicted and abs(other.predicted / best.predicted - 1) < 0.005:
        return (f"a tie on predicted throughput ({other.predicted:.1f} output tok/s per GPU); "
                f"the answer was found first (trial {best.trial})")
    return (f"lower predicted throughput: {other.predicted:.1f} vs {best.predicted:.1f} output "
            f"tok/s per GPU ({_pct(other.predicted, best.predicted)})")


#: Relative differences this small are within the run-to-run noise of a live measurement.
NOISE = 0.03


def caveats(choice: Choice, load_limit: int) -> list[str]:
    """What a user should know before trusting `choice` (pure; [] when nothing stands out):
    an answer whose load reached the search's `load.limit` (it may sustain more), a runner-up
    within noise of it, an answer within noise of an SLA limit."""
    b = choice.best
    if b is None:
        return []
    out: list[str] = []
    if pd.notna(b.row.get("best_load")) and float(b.row["best_load"]) >= load_limit:
        out.append(f"the answer ran at load.limit ({load_limit}): it may sustain more load; "
                   "raise load.limit to find out")
    r = choice.runner_up
    if r is not None:
        ours = b.verified_value if b.verified_ok and r.verified_ok else b.predicted
        theirs = r.verified_value if b.verified_ok and r.verified_ok else r.predicted
        if ours and theirs is not None and abs(theirs / ours - 1) <= NOISE:
            out.append(f"the runner-up ({r.row['config']}) is within {NOISE:.0%} of the answer: "
                       "a tie within noise, either is a sound choice")
    row = b.verified if b.verified_ok else b.row
    slack = json.loads(row["constraints"]) if isinstance(row.get("constraints"), str) else {}
    edge = [k for k, v in slack.items() if k != "memory" and v is not None
            and -NOISE <= float(v) <= 0]
    if edge:
        out.append(f"the answer meets {', '.join(edge)} within {NOISE:.0%} of the limit: a "
                   "small change in load or machine may break the SLA")
    return out


def choose(record: StudyRecord, tier: str) -> Choice:
    cands = ranked(record, tier)
    if not cands:
        ex = record.tier_trials(tier, "explore")
        done = ex[ex["state"] == "COMPLETE"].copy()
        closest = None
        if not done.empty:
            done["worst_slack"] = [max(json.loads(c).values(), default=float("inf"))
                                   for c in done["constraints"]]
            closest = done.sort_values("worst_slack").iloc[0]
        return Choice(tier, None, None, None, closest)
    best = cands[0]
    runner = cands[1] if len(cands) > 1 else None
    failed = [f"trial {c.trial} ({c.verified['reason']})" for c in cands
              if c.verified is not None and not c.verified_ok]
    return Choice(tier, best, runner, why_lost(best, runner) if runner is not None else None,
                  failed_verifications=failed)
