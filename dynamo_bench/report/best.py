"""The answer per SLA tier: which deployment wins, the runner-up and why it lost.

`choose(record, tier)` is pure. A candidate verified live and still meeting the SLA beats any
unverified one; among verified candidates the higher verified throughput per GPU wins; with no
verification the highest predicted value wins (and the summary says it is unverified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dynamo_bench.tune.ranking import rank_candidates
from dynamo_bench.tune.record import TrialRecord
from dynamo_bench.tune.records import StudyRecord, trial_row


@dataclass(frozen=True)
class Candidate:
    """One explored deployment (`record`) and, if it was verified, its live trial
    (`verified`)."""

    record: TrialRecord
    verified: TrialRecord | None

    @property
    def trial(self) -> int:
        return self.record.number

    @property
    def predicted(self) -> float:
        return float(self.record.value or 0.0)

    @property
    def verified_ok(self) -> bool:
        return self.verified is not None and self.verified.status == "complete"

    @property
    def verified_value(self) -> float | None:
        return self.verified.value if self.verified is not None else None

    @property
    def deployment(self) -> dict[str, Any]:
        return dict(self.record.deployment or {})

    @property
    def row(self) -> pd.Series:
        """The explored trial as its row of `StudyRecord.trials` (for pandas users)."""
        return pd.Series(trial_row(self.record))


@dataclass
class Choice:
    """The answer for one tier. `best` is None when no trial met the SLA; then `closest` is the
    infeasible trial nearest to it."""

    tier: str
    best: Candidate | None
    runner_up: Candidate | None
    why_runner_up_lost: str | None
    closest: TrialRecord | None = None
    failed_verifications: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One phrase: what is known of the answer."""
        b = self.best
        if b is None:
            return "no configuration meets the SLA"
        if b.verified is not None:
            return "meets the SLA live" if b.verified_ok else str(b.verified.reason)
        if self.failed_verifications:
            return ("not verified: live verification failed for " +
                    "; ".join(self.failed_verifications))
        return "not verified"


def ranked(record: StudyRecord, tier: str) -> list[Candidate]:
    """The tier's candidates (`tune.ranking.rank_candidates` of its explored trials), each with
    its live verification if it had one, in the order of the module doc."""
    verified = {v.verifies: v for v in record.tier_records(tier, "verify")
                if v.state in ("COMPLETE", "FAIL") and v.verifies is not None}
    cands = [Candidate(r, verified.get(r.number))
             for r in rank_candidates(record.tier_records(tier, "explore"))]

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
        return f"it failed live verification: {other.verified.reason}"
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
    if b.record.best is not None and b.record.best.load >= load_limit:
        out.append(f"the answer ran at load.limit ({load_limit}): it may sustain more load; "
                   "raise load.limit to find out")
    r = choice.runner_up
    if r is not None:
        ours = b.verified_value if b.verified_ok and r.verified_ok else b.predicted
        theirs = r.verified_value if b.verified_ok and r.verified_ok else r.predicted
        if ours and theirs is not None and abs(theirs / ours - 1) <= NOISE:
            out.append(f"the runner-up ({r.record.config}) is within {NOISE:.0%} of the "
                       "answer: a tie within noise, either is a sound choice")
    slack = b.verified.constraints if b.verified_ok and b.verified is not None \
        else b.record.constraints
    edge = [k for k, v in slack.items() if k != "memory" and -NOISE <= v <= 0]
    if edge:
        out.append(f"the answer meets {', '.join(edge)} within {NOISE:.0%} of the limit: a "
                   "small change in load or machine may break the SLA")
    return out


def choose(record: StudyRecord, tier: str) -> Choice:
    """The answer for `tier` (see the module doc); pure."""
    cands = ranked(record, tier)
    if not cands:
        done = [r for r in record.tier_records(tier, "explore") if r.state == "COMPLETE"]
        closest = min(done, key=lambda r: max(r.constraints.values(), default=float("inf")),
                      default=None)
        return Choice(tier, None, None, None, closest)
    best = cands[0]
    runner = cands[1] if len(cands) > 1 else None
    failed = [f"trial {c.trial} ({c.verified.reason})" for c in cands
              if c.verified is not None and not c.verified_ok]
    return Choice(tier, best, runner, why_lost(best, runner) if runner is not None else None,
                  failed_verifications=failed)


def chosen_points(choices: dict[str, Choice]) -> dict[str, tuple[int, float] | None]:
    """Per tier, the answer's (explored trial, load) for the plots; None without an answer."""
    return {t: (c.best.trial, c.best.record.best.load)
            if c.best is not None and c.best.record.best is not None else None
            for t, c in choices.items()}


def answer_row(record: StudyRecord, choice: Choice) -> dict[str, Any]:
    """The answer of one tier as one flat row, the one projection every view of the answers
    shows (`TuningStudy.answers`, report.json, the CLI's table): tier, sla, trial, config,
    gpus, concurrency (the answer's load), predicted and verified output tok/s per GPU,
    verified_ok (None when not verified), verdict and files (best/<tier>). The answer's
    fields are None when nothing met the SLA."""
    b = choice.best
    tier = choice.tier
    return {
        "tier": tier, "sla": str(record.slas[tier]),
        "trial": b.trial if b else None,
        "config": b.record.config if b else None,
        "gpus": b.record.gpus if b else None,
        "concurrency": b.record.best.load if b and b.record.best else None,
        "predicted_tok_s_per_gpu": b.predicted if b else None,
        "verified_tok_s_per_gpu": b.verified_value if b else None,
        "verified_ok": b.verified_ok if b and b.verified is not None else None,
        "verdict": choice.verdict,
        "files": str(record.folder / "best" / tier) if b else None}
