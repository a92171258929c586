"""The steady-state window of a load point, and `Metrics` from the requests inside it.

One definition for both fidelities (live AIPerf runs and the offline replay), applied to the
per-request table (start, end, TTFT, ITL, lengths of every request):

- **Closed loop** (a concurrency c): the first c requests to start are the warm-up wave; the
  window opens when the last of them has finished, so every request after it started into a
  full, already-mixed batch. It closes when the last request starts: from then on fewer than c
  requests run (the drain). Latency percentiles are over the requests that started and
  finished inside the window; throughput is the output tokens produced inside it (each
  request's tokens spread evenly from its first token to its end) over its length.
- **Open loop** (a request rate, or a trace on its own timestamps): the first 10% of the arrival
  span is warm-up, the window closes at the last arrival; requests are kept by start time.

Requests start spread rather than as one burst (AIPerf's concurrency ramp live, staggered
first-wave lengths in the replay; see loadgen/aiperf.py and replay.py), so the batch is mixed
from the start, and the first wave, which would otherwise all prefill at once, is outside the
window whatever its latencies. With too few requests for a window (under `MIN_WINDOW` of them,
or fewer than c), every request is used and `Metrics.steady_state` is False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import LATENCY_METRICS, SLA

#: The fewest requests a window must hold to be used.
MIN_WINDOW = 8
#: Warm-up share of the arrival span in open-loop runs.
OPEN_LOOP_WARMUP = 0.10


@dataclass(frozen=True)
class Window:
    """[start_ns, end_ns] and which requests count. `steady` is False when the run was too
    short for a window and every request was used."""

    start_ns: int
    end_ns: int
    mask: pd.Series
    steady: bool

    @property
    def duration_s(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e9


def steady_window(requests: pd.DataFrame, concurrency: int | None) -> Window:
    """The steady-state window of one load point (see the module docstring)."""
    ok = requests[requests["error"].isna() & requests["start_ns"].notna()
                  & requests["end_ns"].notna()]
    everything = Window(int(requests["start_ns"].min()) if len(requests) else 0,
                        int(requests["end_ns"].max()) if len(requests) else 0,
                        requests["error"].isna(), False)
    if len(ok) < MIN_WINDOW:
        return everything
    starts = ok["start_ns"].astype("int64").sort_values()
    if concurrency:
        c = int(concurrency)
        if len(ok) <= c:
            return everything
        first = ok.loc[starts.index[:c]]
        t0 = int(first["end_ns"].max())
        t1 = int(starts.iloc[-1])
        mask = (requests["error"].isna() & (requests["start_ns"] >= t0)
                & (requests["end_ns"] <= t1))
    else:
        span = int(starts.iloc[-1] - starts.iloc[0])
        t0 = int(starts.iloc[0] + OPEN_LOOP_WARMUP * span)
        t1 = int(starts.iloc[-1])
        mask = requests["error"].isna() & (requests["start_ns"] >= t0) \
            & (requests["start_ns"] <= t1)
    if t1 <= t0 or int(mask.sum()) < MIN_WINDOW:
        return everything
    return Window(t0, t1, mask, True)


def tokens_in_window(requests: pd.DataFrame, w: Window) -> float:
    """Output tokens produced inside the window, each request's spread evenly from its first
    token to its end (requests that overlap the window only in part count in part)."""
    ok = requests[requests["error"].isna()]
    first = ok["start_ns"] + ok["ttft_ms"].fillna(0) * 1e6
    end = ok["end_ns"]
    span = (end - first).clip(lower=1.0)
    overlap = (np.minimum(end, w.end_ns) - np.maximum(first, w.start_ns)).clip(lower=0.0)
    return float((ok["osl"].fillna(0) * overlap / span).sum())


def _stats(values: pd.Series, name: str) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {f"{name}_{s}": None for s in ("p50", "p90", "p95", "p99", "mean")}
    return {f"{name}_p50": float(np.percentile(v, 50)), f"{name}_p90": float(np.percentile(v, 90)),
            f"{name}_p95": float(np.percentile(v, 95)), f"{name}_p99": float(np.percentile(v, 99)),
            f"{name}_mean": float(v.mean())}


def goodput(requests: pd.DataFrame, sla: SLA, duration_s: float) -> float | None:
    """Requests per second that met every latency constraint of `sla` individually.

    Each request's own TTFT / ITL / E2E is compared with the thresholds (the usual goodput
    definition; the statistic in the constraint applies to the run, not to one request).
    """
    if duration_s <= 0:
        return None
    ok = requests["error"].isna()
    for c in sla.constraints:
        if c.metric in LATENCY_METRICS:
            col = requests[c.metric]
            ok &= (col <= c.threshold) if c.op == "<=" else (col >= c.threshold)
    return float(ok.sum()) / duration_s


def window_metrics(requests: pd.DataFrame, *, gpus: int, concurrency: int | None,
                   request_rate: float | None, source: str, sla: SLA | None = None,
                   **extra: object) -> Metrics:
    """`Metrics` of the steady-state window of `requests` (latencies in ms as given).

    ITL is each request's mean inter-token latency, as AIPerf defines it; percentiles are over
    the window's requests; `requests`/`errors` count the whole run. `extra` fields (time base,
    speed-up, saturation, ...) are passed through.
    """
    w = steady_window(requests, concurrency)
    inside = requests[w.mask]
    duration = w.duration_s
    if w.steady:
        out_tokens = tokens_in_window(requests, w)
    else:
        out_tokens = float(inside["osl"].fillna(0).sum())
    in_tokens = float(inside["isl"].fillna(0).sum())
    rate = 1.0 / duration if duration > 0 else math.nan
    out_tps = out_tokens * rate if duration > 0 else None
    itl = inside["itl_ms"].replace(0, np.nan)
    prompt = float(inside["isl"].fillna(0).sum())
    cached = inside["cached_tokens"]
    errors = int(requests["error"].notna().sum())
    return Metrics(
        source=source, concurrency=concurrency, request_rate=request_rate, gpus=gpus,
        **_stats(inside["ttft_ms"], "ttft_ms"), **_stats(inside["itl_ms"], "itl_ms"),
        **_stats(inside["e2e_ms"], "e2e_ms"),
        output_tok_s=out_tps,
        input_tok_s=in_tokens * rate if duration > 0 else None,
        total_tok_s=(in_tokens * rate + (out_tps or 0.0)) if duration > 0 else None,
        output_tok_s_per_gpu=out_tps / gpus if out_tps is not None and gpus else None,
        output_tok_s_per_user=float((1000.0 / itl).mean()) if itl.notna().any() else None,
        request_s=len(inside) * rate if duration > 0 else None,
        goodput_request_s=goodput(inside, sla, duration) if sla is not None else None,
        goodput_sla=str(sla) if sla is not None else None,
        requests=len(requests), errors=errors,
        error_rate=errors / len(requests) if len(requests) else 0.0,
        isl_mean=float(inside["isl"].mean()) if len(inside) else None,
        osl_mean=float(inside["osl"].mean()) if len(inside) else None,
        prefix_cache_hit_rate=(float(cached.fillna(0).sum() / prompt)
                               if prompt and cached.notna().any() else None),
        duration_s=duration, window_requests=len(inside), steady_state=w.steady,
        **extra)
