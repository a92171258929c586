"""AIPerf's artifacts -> `Metrics` and a per-request table. Pure reading, no processes.

Reads `profile_export_aiperf.json` (AIPerf's summary of the profiling phase; latencies in ms)
and `profile_export.jsonl` (one record per request, warm-up included: only
`benchmark_phase == "profiling"` is kept).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import LATENCY_METRICS, SLA

SUMMARY = "profile_export_aiperf.json"
RECORDS = "profile_export.jsonl"
_AIPERF_LATENCY = {"ttft_ms": "time_to_first_token", "itl_ms": "inter_token_latency",
                   "e2e_ms": "request_latency"}
REQUEST_COLUMNS = ["start_ns", "end_ns", "ttft_ms", "itl_ms", "e2e_ms", "isl", "osl",
                   "cached_tokens", "cancelled", "error"]


class ArtifactError(DynamoBenchError):
    """An artifact directory is missing files or holds something unreadable."""


def read_summary(artifacts: Path) -> dict[str, Any]:
    path = artifacts / SUMMARY
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path} not found (AIPerf did not finish?)") from None
    except ValueError as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from None


def read_requests(artifacts: Path) -> pd.DataFrame:
    """One row per profiling-phase request (warm-up dropped), in completion order.

    Columns: start_ns, end_ns, ttft_ms, itl_ms, e2e_ms, isl, osl, cached_tokens (server-reported
    prompt tokens served from cache), cancelled, error (the error type, or None).
    """
    rows = []
    path = artifacts / RECORDS
    if not path.exists():
        raise ArtifactError(f"{path} not found")
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            meta = rec.get("metadata", {})
            if meta.get("benchmark_phase") != "profiling":
                continue
            m = {k: v.get("value") for k, v in (rec.get("metrics") or {}).items()}
            err = rec.get("error")
            rows.append({
                "start_ns": meta.get("request_start_ns"),
                "end_ns": meta.get("request_end_ns"),
                "ttft_ms": m.get("time_to_first_token"),
                "itl_ms": m.get("inter_token_latency"),
                "e2e_ms": m.get("request_latency"),
                "isl": m.get("input_sequence_length"),
                "osl": m.get("output_sequence_length"),
                "cached_tokens": m.get("usage_prompt_cache_read_tokens"),
                "cancelled": bool(meta.get("was_cancelled")),
                "error": err.get("type") if isinstance(err, dict) else err,
            })
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)


def _stat(summary: dict[str, Any], tag: str, stat: str) -> float | None:
    entry = summary.get(tag)
    if not isinstance(entry, dict):
        return None
    value = entry.get("avg" if stat == "mean" else stat)
    return None if value is None else float(value)


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


def summarize(artifacts: Path, *, gpus: int = 0, concurrency: int | None = None,
              request_rate: float | None = None, sla: SLA | None = None,
              speedup_ratio: float = 1.0) -> tuple[Metrics, pd.DataFrame]:
    """`Metrics` and the per-request table of one AIPerf run.

    With `speedup_ratio` S != 1 (a mocker run faster than real time), latencies are multiplied
    and throughputs divided by S to express them in simulated time (`time_base="simulated"`).
    """
    summary = read_summary(artifacts)
    requests = read_requests(artifacts)
    s = speedup_ratio
    values: dict[str, Any] = {}
    for metric, tag in _AIPERF_LATENCY.items():
        for stat in ("p50", "p90", "p95", "p99", "mean"):
            v = _stat(summary, tag, stat)
            values[f"{metric}_{stat}"] = None if v is None else v * s
    ok = int(requests["error"].isna().sum())
    errors = int(len(requests) - ok)
    duration = _stat(summary, "benchmark_duration", "mean")
    out_tps = _stat(summary, "output_token_throughput", "mean")
    in_tps = _stat(summary, "input_token_throughput", "mean")
    total_tps = _stat(summary, "total_token_throughput", "mean")
    req_s = _stat(summary, "request_throughput", "mean")
    per_user = _stat(summary, "output_token_throughput_per_user", "mean")
    cached = requests["cached_tokens"].fillna(0).sum()
    prompt = requests.loc[requests["error"].isna(), "isl"].fillna(0).sum()
    hit_rate = float(cached / prompt) if prompt and requests["cached_tokens"].notna().any() \
        else None
    scaled_duration = None if duration is None else duration * s
    metrics = Metrics(
        source="aiperf", concurrency=concurrency, request_rate=request_rate, gpus=gpus,
        **values,
        output_tok_s=safe_div(out_tps, s), input_tok_s=safe_div(in_tps, s),
        total_tok_s=safe_div(total_tps, s),
        output_tok_s_per_gpu=safe_div(safe_div(out_tps, s), gpus) if gpus else None,
        output_tok_s_per_user=safe_div(per_user, s),
        request_s=safe_div(req_s, s),
        goodput_request_s=(goodput(requests, _scaled(sla, 1 / s), duration)
                           / s if sla is not None and duration else None),
        goodput_sla=str(sla) if sla is not None else None,
        complete=not summary.get("was_cancelled", False),
        requests=len(requests), errors=errors,
        error_rate=errors / len(requests) if len(requests) else 0.0,
        isl_mean=_stat(summary, "input_sequence_length", "mean"),
        osl_mean=_stat(summary, "output_sequence_length", "mean"),
        prefix_cache_hit_rate=hit_rate,
        duration_s=scaled_duration,
        speedup_ratio=s, time_base="simulated" if s != 1.0 else "wall",
    )
    if s != 1.0:
        for col in ("ttft_ms", "itl_ms", "e2e_ms"):
            requests[col] = requests[col] * s
    return metrics, requests


def safe_div(x: float | None, d: float) -> float | None:
    """x / d, or None when x is missing or NaN or d is zero."""
    return None if x is None or d == 0 or (isinstance(x, float) and math.isnan(x)) else x / d


def _scaled(sla: SLA | None, factor: float) -> SLA:
    """The SLA with latency thresholds multiplied by `factor` (to compare wall-time records)."""
    assert sla is not None
    return sla.model_copy(update={"constraints": [
        c.model_copy(update={"threshold": c.threshold * factor}) if c.metric in LATENCY_METRICS
        else c for c in sla.constraints]})


def was_cancelled(artifacts: Path) -> bool:
    """True when AIPerf stopped before the planned end (its results may be incomplete)."""
    return bool(read_summary(artifacts).get("was_cancelled"))


def inter_chunk_latencies(artifacts: Path) -> list[list[float]]:
    """Per profiling-phase request, the gaps between streamed chunks (ms), in order."""
    out = []
    with open(artifacts / RECORDS) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("metadata", {}).get("benchmark_phase") != "profiling" or rec.get("error"):
                continue
            gaps = (rec.get("metrics") or {}).get("inter_chunk_latency", {}).get("value")
            if isinstance(gaps, list):
                out.append([float(g) for g in gaps])
    return out
