"""Measured points -> timing tables: how profiling runs calibrate the simulation.

Pure functions. Prefill times measured at a few input lengths are interpolated (and linearly
extrapolated) in log-log space; decode step times measured at a few (batch, context) points are
fitted by least squares to

    itl = a + b x batch + c x active_kv_tokens,   active_kv_tokens = batch x context

(fixed per-step cost, per-sequence cost, and KV read cost: the terms the roofline model has in
its memory-bound regime), then evaluated on the table grid. The result has the keys of
`perf.tables.NPZ_KEYS` and overrides the model's tables for that deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrefillPoint:
    isl: float
    ttft_ms: float


@dataclass(frozen=True)
class DecodePoint:
    batch: float
    context: float
    itl_ms: float

    @property
    def active_kv(self) -> float:
        return self.batch * self.context


def fit_prefill(points: list[PrefillPoint], grid: np.ndarray) -> np.ndarray:
    """Prefill time on `grid` from measured points (log-log, linear beyond the ends)."""
    if len(points) < 2:
        raise ValueError("need prefill points at two or more input lengths")
    pts = sorted(points, key=lambda p: p.isl)
    x = np.log([p.isl for p in pts])
    y = np.log([max(p.ttft_ms, 1e-3) for p in pts])
    g = np.log(grid)
    out = np.interp(g, x, y)
    lo_slope = (y[1] - y[0]) / (x[1] - x[0])
    hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    out = np.where(g < x[0], y[0] + lo_slope * (g - x[0]), out)
    out = np.where(g > x[-1], y[-1] + max(hi_slope, 1.0) * (g - x[-1]), out)
    return np.exp(out)


def fit_decode(points: list[DecodePoint]) -> tuple[float, float, float]:
    """(a, b, c) of itl = a + b x batch + c x active_kv_tokens, least squares, non-negative."""
    if len(points) < 3:
        raise ValueError("need decode points at three or more (batch, context) pairs")
    A = np.array([[1.0, p.batch, p.active_kv] for p in points])
    y = np.array([p.itl_ms for p in points])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    coef = np.maximum(coef, 0.0)
    return float(coef[0]), float(coef[1]), float(coef[2])


def fitted_tables(prefill: list[PrefillPoint], decode: list[DecodePoint], *,
                  isl_grid: np.ndarray, active_grid: np.ndarray,
                  context_grid: np.ndarray) -> dict[str, np.ndarray]:
    """Timing tables (perf/tables.py keys) from profiling measurements."""
    a, b, c = fit_decode(decode)
    itl = np.empty((len(active_grid), len(context_grid)))
    for i, kv in enumerate(active_grid):
        for j, ctx in enumerate(context_grid):
            batch = max(1.0, kv / ctx)
            itl[i, j] = a + b * batch + c * min(kv, batch * ctx)
    return {"prefill_isl": np.asarray(isl_grid, dtype=np.float64),
            "prefill_ttft_ms": fit_prefill(prefill, np.asarray(isl_grid, dtype=np.float64)),
            "decode_active_kv_tokens": np.asarray(active_grid, dtype=np.float64),
            "decode_context_length": np.asarray(context_grid, dtype=np.float64),
            "decode_itl": itl}


def table_itl(tables: dict[str, np.ndarray], batch: float, context: float) -> float:
    """Look up a decode step time the way the mocker does (nearest grid cells, bilinear)."""
    kv = np.asarray(tables["decode_active_kv_tokens"])
    ctx = np.asarray(tables["decode_context_length"])
    grid = np.asarray(tables["decode_itl"])
    col = np.array([np.interp(batch * context, kv, grid[:, j]) for j in range(len(ctx))])
    return float(np.interp(context, ctx, col))


def table_ttft(tables: dict[str, np.ndarray], isl: float) -> float:
    return float(np.interp(isl, tables["prefill_isl"], tables["prefill_ttft_ms"]))
