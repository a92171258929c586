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
from dynamo_bench.loadgen.steady import window_metrics
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


def read_requests(artifacts: Path, partial: bool = False) -> pd.DataFrame:
    """One row per profiling-phase request (warm-up dropped), in completion order.

    `partial`: the run was stopped; a last line cut short in writing is skipped.

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
            try:
                rec = json.loads(line)
            except ValueError:
                if partial:
                    continue
                raise ArtifactError(f"{path}: a line is not valid JSON") from None
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


def summarize(artifacts: Path, *, gpus: int = 0, concurrency: int | None = None,
              request_rate: float | None = None, sla: SLA | None = None,
              speedup_ratio: float = 1.0, partial: bool = False
              ) -> tuple[Metrics, pd.DataFrame]:
    """`Metrics` of the steady-state window (loadgen/steady.py) and the per-request table of one
    AIPerf run.

    `partial`: AIPerf was stopped before it wrote its summary; the requests recorded so far are
    used and the run counts as incomplete.

    With `speedup_ratio` S != 1 (a mocker run faster than real time), latencies are multiplied
    and throughputs divided by S to express them in simulated time (`time_base="simulated"`);
    the table's latency columns are rescaled the same way, its timestamps are kept as measured.
    """
    summary = {"was_cancelled": True} if partial else read_summary(artifacts)
    requests = read_requests(artifacts, partial=partial)
    s = speedup_ratio
    # the window is cut on the wall-time records, then expressed in simulated time
    sla_wall = _scaled(sla, 1 / s) if sla is not None and s != 1.0 else sla
    metrics = window_metrics(
        requests, gpus=gpus, concurrency=concurrency, request_rate=request_rate,
        source="aiperf", sla=sla_wall, complete=not summary.get("was_cancelled", False),
        speedup_ratio=s, time_base="simulated" if s != 1.0 else "wall")
    if s != 1.0:
        update: dict[str, Any] = {
            k: _mul(getattr(metrics, k), s) for k in Metrics.model_fields
            if k.split("_ms_")[0] in ("ttft", "itl", "e2e") and "_ms_" in k}
        update["duration_s"] = _mul(metrics.duration_s, s)
        for k in ("output_tok_s", "input_tok_s", "total_tok_s", "output_tok_s_per_gpu",
                  "output_tok_s_per_user", "request_s", "goodput_request_s"):
            update[k] = safe_div(getattr(metrics, k), s)
        update["goodput_sla"] = str(sla) if sla is not None else None
        metrics = metrics.model_copy(update=update)
        for col in ("ttft_ms", "itl_ms", "e2e_ms"):
            requests[col] = requests[col] * s
    return metrics, requests


def _scaled(sla: SLA, factor: float) -> SLA:
    """The SLA with latency thresholds multiplied by `factor` (to compare wall-time records)."""
    return sla.model_copy(update={"constraints": [
        c.model_copy(update={"threshold": c.threshold * factor}) if c.metric in LATENCY_METRICS
        else c for c in sla.constraints]})


def client_means(requests: pd.DataFrame) -> tuple[float | None, float | None]:
    """Mean TTFT and ITL (ms) over every successful request of a run (not only the window):
    what the server's own histograms over the same interval are compared with."""
    ok = requests[requests["error"].isna()]
    ttft = ok["ttft_ms"].dropna()
    itl = ok["itl_ms"].dropna()
    return (float(ttft.mean()) if len(ttft) else None, float(itl.mean()) if len(itl) else None)


def _mul(x: float | None, m: float) -> float | None:
    return None if x is None else x * m


def safe_div(x: float | None, d: float) -> float | None:
    """x / d, or None when x is missing or NaN or d is zero."""
    return None if x is None or d == 0 or (isinstance(x, float) and math.isnan(x)) else x / d


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
