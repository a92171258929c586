"""Service-level objectives: `ttft_ms.p90 <= 500, itl_ms.p90 <= 25`.

An `SLA` is a list of constraints on `Metrics`. `feasible()` says whether metrics meet all of
them; `slack()` gives one signed number per constraint (<= 0 means met), scaled by the
threshold, in the form Optuna's `trial.set_constraint` expects.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from dynamo_bench.errors import SpecError
from dynamo_bench.specs.base import Strict

#: Metrics a constraint may name, and the statistics each has.
LATENCY_METRICS = ("ttft_ms", "itl_ms", "e2e_ms")
STATS = ("p50", "p90", "p95", "p99", "mean")
SCALAR_METRICS = ("output_tok_s", "output_tok_s_per_gpu", "output_tok_s_per_user",
                  "total_tok_s", "request_s", "error_rate", "goodput_request_s")
Op = Literal["<=", ">="]

_RE = re.compile(r"^\s*([a-z_]+)(?:\.([a-z0-9]+))?\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*$")


class Constraint(Strict):
    """`metric[.stat] op threshold`, e.g. ttft_ms.p90 <= 500."""

    metric: str
    stat: str | None = None
    op: Op = "<="
    threshold: float = Field(allow_inf_nan=False)

    @property
    def key(self) -> str:
        """The metric's column name in tables: `ttft_ms_p90`, `output_tok_s`."""
        return f"{self.metric}_{self.stat}" if self.stat else self.metric

    def __str__(self) -> str:
        name = f"{self.metric}.{self.stat}" if self.stat else self.metric
        return f"{name}{self.op}{self.threshold:g}"

    def value(self, metrics: object) -> float:
        """The constrained value read from a `Metrics` (NaN when it has none)."""
        v = getattr(metrics, self.key, None)
        return float("nan") if v is None else float(v)

    def slack(self, metrics: object) -> float:
        """Signed, threshold-scaled distance to the limit: <= 0 when met; +inf without a value."""
        v = self.value(metrics)
        if math.isnan(v):
            return math.inf
        scale = abs(self.threshold) or 1.0
        return (v - self.threshold) / scale if self.op == "<=" else (self.threshold - v) / scale


class SLA(Strict):
    """A named set of constraints, all of which must hold."""

    name: str = "sla"
    constraints: list[Constraint] = Field(min_length=1)

    def feasible(self, metrics: object) -> bool:
        return all(c.slack(metrics) <= 0 for c in self.constraints)

    def slack(self, metrics: object) -> list[float]:
        return [c.slack(metrics) for c in self.constraints]

    def violated(self, metrics: object) -> list[Constraint]:
        return [c for c in self.constraints if c.slack(metrics) > 0]

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.constraints)


def parse_constraint(text: str, field: str = "sla") -> Constraint:
    """One `metric.stat<=value` term. Raises `SpecError` naming what is wrong."""
    m = _RE.match(text)
    if not m:
        raise SpecError(field, f"{text.strip()!r} is not a constraint (write e.g. "
                        "ttft_ms.p90<=500)")
    metric, stat, op, number = m.groups()
    if metric in LATENCY_METRICS:
        if stat is None:
            raise SpecError(field, f"{metric} needs a statistic (e.g. {metric}.p90; one of "
                            f"{', '.join(STATS)})")
        if stat not in STATS:
            raise SpecError(field, f"unknown statistic {stat!r} for {metric} "
                            f"(choose from: {', '.join(STATS)})")
    elif metric in SCALAR_METRICS:
        if stat is not None:
            raise SpecError(field, f"{metric} has no statistic (write {metric}{op}{number})")
    else:
        raise SpecError(field, f"unknown metric {metric!r} (choose from: "
                        f"{', '.join(LATENCY_METRICS + SCALAR_METRICS)})")
    try:
        threshold = float(number)
    except ValueError:
        raise SpecError(field, f"{number!r} is not a number") from None
    if not math.isfinite(threshold):
        raise SpecError(field, f"{number!r} is not a finite number")
    if threshold < 0:
        raise SpecError(field, f"{threshold:g} is invalid: a limit must be >= 0")
    return Constraint(metric=metric, stat=stat, op="<=" if op.startswith("<") else ">=",
                      threshold=threshold)


def parse_sla(text: str, name: str = "sla", field: str = "sla") -> SLA:
    """`"ttft_ms.p90<=500,itl_ms.p90<=25"` -> `SLA`. Raises `SpecError` on any bad term."""
    terms = [t for t in re.split(r"[,;]", text) if t.strip()]
    if not terms:
        raise SpecError(field, "is empty (write e.g. ttft_ms.p90<=500,itl_ms.p90<=25)")
    return SLA(name=name, constraints=[parse_constraint(t, field) for t in terms])
