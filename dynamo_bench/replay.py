"""The offline fidelity: DeploymentSpec + WorkloadSpec -> Dynamo's offline replay -> Metrics.

Dynamo's replay (`dynamo.replay`) runs mocker engines and the real KV-router logic in simulated
time, with no processes and no HTTP: thousands of requests in well under a second. It reads the
same timing tables as live mocker launches (perf/timing.py), so a replay predicts what a live
mocker run of the same deployment measures, minus the load client and network overheads.

Metrics follow AIPerf's definitions so both fidelities compare directly: ITL is each request's
mean inter-token latency ((e2e - ttft) / (output tokens - 1)), and percentiles are over requests.

Approximations: the replay knows round-robin and KV routing only (random, least-loaded and
power-of-two run as round-robin), ignores the KV router's tuning settings, and takes fixed input
and output lengths (the workload's means).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynamo_bench.errors import SpecError
from dynamo_bench.loadgen.artifacts import REQUEST_COLUMNS, goodput
from dynamo_bench.perf.tables import TimingTables
from dynamo_bench.perf.timing import DEFAULT_BLOCK_SIZE, ENGINE_DEFAULTS, tables_for
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.specs.deployment import DeploymentSpec, WorkerGroup
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.specs.workload import WorkloadSpec


def _engine_args(group: WorkerGroup, tables: TimingTables | None,
                 worker_type: str | None = None) -> dict[str, Any]:
    engine: dict[str, Any] = {
        "backend": "vllm", "block_size": group.block_size or DEFAULT_BLOCK_SIZE,
        "enable_prefix_caching": group.enable_prefix_caching,
        "max_num_seqs": group.max_num_seqs or ENGINE_DEFAULTS["max_num_seqs"],
        "max_num_batched_tokens": (group.max_num_batched_tokens
                                   or ENGINE_DEFAULTS["max_num_batched_tokens"]),
        "enable_chunked_prefill": (ENGINE_DEFAULTS["enable_chunked_prefill"]
                                   if group.enable_chunked_prefill is None
                                   else group.enable_chunked_prefill)}
    blocks = group.num_gpu_blocks or (tables.num_gpu_blocks if tables else None)
    if blocks:
        engine["num_gpu_blocks"] = blocks
    if worker_type is not None:
        engine["worker_type"] = worker_type
        if tables is not None and tables.kv_transfer_gb_s:
            engine["kv_transfer_bandwidth"] = tables.kv_transfer_gb_s
            engine["kv_transfer_bytes_per_token"] = tables.kv_bytes_per_token
    if tables is not None:
        engine["timing_model"] = {"type": "external", "provider": "dynamo_profile",
                                  "config": {"path": str(tables.path)}}
    return {"engine": engine}


def replay_kwargs(spec: DeploymentSpec, workload: WorkloadSpec,
                  tables: dict[str, TimingTables]) -> dict[str, Any]:
    """The keyword arguments for `dynamo.replay` (without the lengths and request count)."""
    kw: dict[str, Any] = {"router_mode": "kv_router" if spec.router.mode == "kv"
                          else "round_robin", "capture_per_request": True}
    if spec.mode == "agg":
        g = spec.workers["agg"]
        kw.update(extra_engine_args=_engine_args(g, tables.get("agg")), num_workers=g.replicas)
    else:
        p, d = spec.workers["prefill"], spec.workers["decode"]
        kw.update(prefill_engine_args=_engine_args(p, tables.get("prefill"), "prefill"),
                  decode_engine_args=_engine_args(d, tables.get("decode"), "decode"),
                  num_prefill_workers=p.replicas, num_decode_workers=d.replicas)
    if workload.request_rate is not None:
        kw["request_rate"] = workload.request_rate
        if workload.concurrency is not None:
            kw["replay_concurrency"] = workload.concurrency
    else:
        kw["replay_concurrency"] = workload.concurrency
    return kw


def requests_table(per_request: list[dict[str, Any]]) -> pd.DataFrame:
    """The replay's per-request records as the same table `loadgen.artifacts` builds."""
    rows = []
    for r in per_request:
        rows.append({
            "start_ns": int(r["arrival_time_ms"] * 1e6),
            "end_ns": int((r.get("terminal_time_ms") or r["arrival_time_ms"]) * 1e6),
            "ttft_ms": r.get("ttft_ms"), "itl_ms": r.get("itl_ms"),
            "e2e_ms": r.get("e2e_latency_ms"), "isl": r.get("input_length"),
            "osl": r.get("output_length"), "cached_tokens": r.get("reused_input_tokens"),
            "cancelled": False,
            "error": None if r.get("terminal_status", "completed") == "completed"
            else str(r.get("terminal_status")),
        })
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)


def _stats(values: pd.Series, name: str) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {f"{name}_{s}": None for s in ("p50", "p90", "p95", "p99", "mean")}
    return {f"{name}_p50": float(np.percentile(v, 50)), f"{name}_p90": float(np.percentile(v, 90)),
            f"{name}_p95": float(np.percentile(v, 95)), f"{name}_p99": float(np.percentile(v, 99)),
            f"{name}_mean": float(v.mean())}


def metrics_from_requests(requests: pd.DataFrame, duration_s: float, *, gpus: int,
                          concurrency: int | None, request_rate: float | None,
                          sla: SLA | None = None, source: str = "replay") -> Metrics:
    """`Metrics` from a per-request table, with AIPerf's definitions."""
    ok = requests[requests["error"].isna()]
    out_tokens = float(ok["osl"].sum())
    in_tokens = float(ok["isl"].sum())
    itl = ok["itl_ms"].replace(0, np.nan)
    prompt = float(ok["isl"].sum())
    out_tps = out_tokens / duration_s if duration_s > 0 else None
    return Metrics(
        source=source, concurrency=concurrency, request_rate=request_rate, gpus=gpus,
        **_stats(ok["ttft_ms"], "ttft_ms"), **_stats(ok["itl_ms"], "itl_ms"),
        **_stats(ok["e2e_ms"], "e2e_ms"),
        output_tok_s=out_tps,
        input_tok_s=in_tokens / duration_s if duration_s > 0 else None,
        total_tok_s=(in_tokens + out_tokens) / duration_s if duration_s > 0 else None,
        output_tok_s_per_gpu=out_tps / gpus if out_tps is not None and gpus else None,
        output_tok_s_per_user=float((1000.0 / itl).mean()) if itl.notna().any() else None,
        request_s=len(ok) / duration_s if duration_s > 0 else None,
        goodput_request_s=goodput(requests, sla, duration_s) if sla is not None else None,
        goodput_sla=str(sla) if sla is not None else None,
        requests=len(requests), errors=len(requests) - len(ok),
        error_rate=(len(requests) - len(ok)) / len(requests) if len(requests) else 0.0,
        isl_mean=float(ok["isl"].mean()) if len(ok) else None,
        osl_mean=float(ok["osl"].mean()) if len(ok) else None,
        prefix_cache_hit_rate=float(ok["cached_tokens"].fillna(0).sum() / prompt)
        if prompt else None,
        duration_s=duration_s, client_saturated=False,
        saturation_reason="simulated time: no load client",
        time_base="simulated")


def replay(spec: DeploymentSpec, workload: WorkloadSpec, *, sla: SLA | None = None,
           model_dir: str | Path | None = None) -> tuple[Metrics, pd.DataFrame]:
    """Predict `workload` on `spec` with Dynamo's offline replay.

    The deployment is simulated with the mocker whatever its backend (a vLLM, SGLang or
    TensorRT-LLM spec is replayed on its model's timing tables). Raises `DoesNotFitError` when
    a group does not fit in memory, like a live launch.
    """
    # the replay logs every routing decision unless told otherwise before it is imported
    os.environ.setdefault("DYN_LOG", "error")
    from dynamo.replay import run_synthetic_trace_replay, run_trace_replay

    simulated = spec if spec.backend == "mocker" else spec.model_copy(update={"backend":
                                                                                "mocker"})
    path = model_dir or resolve_model(spec.model, simulated=True)
    tables = tables_for(simulated, path)
    kw = replay_kwargs(simulated, workload, dict(tables))
    if workload.trace is not None:
        if workload.trace.format != "mooncake_trace":
            raise SpecError("trace.format", f"the replay reads mooncake_trace files, not "
                            f"{workload.trace.format}")
        if workload.trace.fixed_schedule:
            kw.pop("replay_concurrency", None)
        report = run_trace_replay([str(Path(workload.trace.path).expanduser())], **kw)
    else:
        assert workload.isl is not None and workload.osl is not None
        count = workload.effective_request_count
        if count is None:  # a duration: as many requests as the load would send in it
            rate = workload.request_rate or 0
            count = max(40, int((rate or 4) * (workload.duration_s or 20)))
        prefix_ratio, groups = 0.0, 0
        isl = workload.isl.mean
        if workload.prefix is not None:
            isl += workload.prefix.length
            prefix_ratio = workload.prefix.length / isl
            groups = workload.prefix.pool_size
        elif workload.shared_system_prompt_length:
            isl += workload.shared_system_prompt_length
            prefix_ratio = workload.shared_system_prompt_length / isl
            groups = 1
        if workload.multi_turn is not None:
            kw["turns_per_session"] = max(1, round(workload.multi_turn.turns_mean))
            kw["inter_turn_delay_ms"] = workload.multi_turn.delay_ms_mean
        report = run_synthetic_trace_replay(
            isl, workload.osl.mean, count, shared_prefix_ratio=prefix_ratio,
            num_prefix_groups=groups, arrival_seed=workload.seed, **kw)
    requests = requests_table(report.per_request or [])
    duration_s = float(report.summary["duration_ms"]) / 1000.0
    metrics = metrics_from_requests(requests, duration_s, gpus=spec.gpus,
                                    concurrency=workload.concurrency,
                                    request_rate=workload.request_rate, sla=sla)
    return metrics, requests
