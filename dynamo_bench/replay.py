"""The offline fidelity: DeploymentSpec + WorkloadSpec -> Dynamo's offline replay -> Metrics.

Dynamo's replay (`dynamo.replay`) runs mocker engines and the real KV-router logic in simulated
time, with no processes and no HTTP: thousands of requests in well under a second. It reads the
same timing tables as live mocker launches (perf/timing.py), so a replay predicts what a live
mocker run of the same deployment measures, minus the load client and network overheads. A
vLLM, SGLang or TensorRT-LLM deployment is replayed on its own engine's timing (and SGLang with
the mocker's SGLang scheduler).

Synthetic single-turn traffic is replayed as a trace built here from the workload, request by
request: input and output lengths drawn from the workload's distributions (seeded), shared
prefixes as shared block hashes, arrivals from its rate and arrival pattern. Under a concurrency
the first wave's output lengths are staggered (request i of c gets (i + 1) / c of its length),
so later requests start spread over one request's lifetime instead of in lockstep, as AIPerf's
concurrency ramp spreads them live. Metrics come from the steady-state window of the requests
(loadgen/steady.py), with AIPerf's definitions (ITL is each request's mean inter-token latency,
percentiles are over requests), so both fidelities compare directly.

Approximations: the replay knows round-robin and KV routing only (random, least-loaded and
power-of-two run as round-robin) and ignores the KV router's tuning settings; multi-turn
sessions are replayed with Dynamo's own synthetic sessions at the mean lengths; a request rate
with a concurrency cap is replayed open loop, without the cap.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynamo_bench.errors import SpecError
from dynamo_bench.loadgen.artifacts import REQUEST_COLUMNS
from dynamo_bench.loadgen.preflight import first_record_has_timestamp, trace_path
from dynamo_bench.loadgen.steady import window_metrics
from dynamo_bench.perf.tables import TimingTables
from dynamo_bench.perf.timing import DEFAULT_BLOCK_SIZE, ENGINE_DEFAULTS, tables_for
from dynamo_bench.specs.deployment import DeploymentSpec, WorkerGroup
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.specs.workload import WorkloadSpec

#: Token granularity of the synthetic traces' block hashes.
TRACE_BLOCK = 16
#: The mocker's scheduler per engine (its TensorRT-LLM scheduler is its vLLM one).
MOCKER_ENGINE = {"mocker": "vllm", "vllm": "vllm", "sglang": "sglang", "trtllm": "vllm"}


def _engine_args(group: WorkerGroup, tables: TimingTables | None,
                 worker_type: str | None = None, backend: str = "mocker") -> dict[str, Any]:
    engine: dict[str, Any] = {
        "backend": MOCKER_ENGINE[backend], "block_size": group.block_size or DEFAULT_BLOCK_SIZE,
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
        kw.update(extra_engine_args=_engine_args(g, tables.get("agg"), backend=spec.backend),
                  num_workers=g.replicas)
    else:
        p, d = spec.workers["prefill"], spec.workers["decode"]
        kw.update(prefill_engine_args=_engine_args(p, tables.get("prefill"), "prefill",
                                                   spec.backend),
                  decode_engine_args=_engine_args(d, tables.get("decode"), "decode",
                                                  spec.backend),
                  num_prefill_workers=p.replicas, num_decode_workers=d.replicas)
    if workload.request_rate is None:
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


def _normal(rng: np.random.Generator, mean: float, stddev: float, n: int) -> np.ndarray:
    if stddev <= 0:
        return np.full(n, int(mean), dtype=np.int64)
    return np.maximum(1, np.round(rng.normal(mean, stddev, n))).astype(np.int64)


def synthetic_trace(workload: WorkloadSpec, count: int) -> list[dict[str, Any]]:
    """The requests of a single-turn synthetic workload as mooncake trace records (see the
    module docstring): lengths, shared-prefix block hashes, arrival times in ms."""
    assert workload.isl is not None and workload.osl is not None
    rng = np.random.default_rng(workload.seed)
    isl = _normal(rng, workload.isl.mean, workload.isl.stddev, count)
    osl = _normal(rng, workload.osl.mean, workload.osl.stddev, count)
    prefix_len, groups = 0, 0
    if workload.prefix is not None:
        prefix_len, groups = workload.prefix.length, workload.prefix.pool_size
    elif workload.shared_system_prompt_length:
        prefix_len, groups = workload.shared_system_prompt_length, 1
    group = rng.integers(0, max(groups, 1), count)
    c = workload.concurrency
    if workload.request_rate is None and c:
        first = min(c, count)
        osl[:first] = np.maximum(1, np.round(osl[:first] * (np.arange(first) + 1) / first))
    arrivals = _arrivals(workload, count, rng)
    prefix_blocks = prefix_len // TRACE_BLOCK
    next_id = max(groups, 1) * (prefix_blocks + 1)
    records = []
    for i in range(count):
        length = int(isl[i]) + prefix_len
        blocks = -(-length // TRACE_BLOCK)
        shared = [int(group[i]) * (prefix_blocks + 1) + k for k in range(prefix_blocks)] \
            if groups else []
        own = list(range(next_id, next_id + blocks - len(shared)))
        next_id += len(own)
        records.append({"timestamp": float(arrivals[i]), "input_length": length,
                        "output_length": int(osl[i]), "hash_ids": shared + own})
    return records


def _arrivals(workload: WorkloadSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    rate = workload.request_rate
    if rate is None:
        return np.zeros(count)
    mean_gap = 1000.0 / rate
    if workload.arrival == "constant":
        gaps = np.full(count, mean_gap)
    elif workload.arrival == "gamma":
        shape = workload.burstiness or 1.0
        gaps = rng.gamma(shape, mean_gap / shape, count)
    else:
        gaps = rng.exponential(mean_gap, count)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def _request_count(workload: WorkloadSpec) -> int:
    count = workload.effective_request_count
    if count is None:  # a duration: as many requests as the load would send in it
        rate = workload.request_rate or 0
        count = max(40, int((rate or 4) * (workload.duration_s or 20)))
    return count


@contextmanager
def _bars_hidden() -> Iterator[None]:
    """Hide a terminal's stderr (file descriptor 2) from Dynamo's replay while it runs.

    The replay's Rust core draws its own progress bars on a terminal at every step (thousands
    of redraws over a study); dynamo-bench reports progress itself. Off a terminal the replay
    draws nothing, so nothing is redirected.
    """
    global _hidden, _saved_fd
    with _hidden_lock:  # replays may run in several threads: the first hides, the last shows
        if _hidden == 0 and os.isatty(2):
            sys.stderr.flush()
            _saved_fd = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        _hidden += 1
    try:
        yield
    finally:
        with _hidden_lock:
            _hidden -= 1
            if _hidden == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


_hidden_lock = threading.Lock()
_hidden = 0
_saved_fd: int | None = None


def replay(spec: DeploymentSpec, workload: WorkloadSpec, *, sla: SLA | None = None,
           model_dir: str | Path | None = None) -> tuple[Metrics, pd.DataFrame]:
    """Predict `workload` on `spec` with Dynamo's offline replay.

    Any backend is simulated with the mocker on the timing tables of its own engine. Raises
    `DoesNotFitError` when a group does not fit in memory, like a live launch.
    """
    # the replay logs every routing decision unless told otherwise before it is imported
    os.environ.setdefault("DYN_LOG", "error")
    from dynamo.replay import run_synthetic_trace_replay, run_trace_replay

    tables = tables_for(spec, model_dir)
    kw = replay_kwargs(spec, workload, dict(tables))
    if workload.trace is not None:
        if workload.trace.format != "mooncake_trace":
            raise SpecError("trace.format", f"the replay reads mooncake_trace files, not "
                            f"{workload.trace.format}")
        path = trace_path(workload.trace)
        timed = workload.trace.fixed_schedule
        if timed is None:  # as AIPerf decides it live: replay timestamps when the trace has them
            timed = first_record_has_timestamp(path)
        if timed:
            kw.pop("replay_concurrency", None)
        if workload.trace.block_size is not None:
            kw["trace_block_size"] = workload.trace.block_size
        with _bars_hidden():
            report = run_trace_replay([str(path)], **kw)
    elif workload.multi_turn is not None:
        assert workload.isl is not None and workload.osl is not None
        isl, prefix_ratio, groups = workload.isl.mean, 0.0, 0
        if workload.prefix is not None:
            isl += workload.prefix.length
            prefix_ratio, groups = workload.prefix.length / isl, workload.prefix.pool_size
        elif workload.shared_system_prompt_length:
            isl += workload.shared_system_prompt_length
            prefix_ratio, groups = workload.shared_system_prompt_length / isl, 1
        if workload.request_rate is not None:
            kw["request_rate"] = workload.request_rate
        kw["turns_per_session"] = max(1, round(workload.multi_turn.turns_mean))
        kw["inter_turn_delay_ms"] = workload.multi_turn.delay_ms_mean
        with _bars_hidden():
            report = run_synthetic_trace_replay(
                isl, workload.osl.mean, _request_count(workload),
                shared_prefix_ratio=prefix_ratio, num_prefix_groups=groups,
                arrival_seed=workload.seed, **kw)
    else:
        folder = Path(tempfile.mkdtemp(prefix="dbench-replay-"))
        try:
            trace = folder / "trace.jsonl"
            trace.write_text("".join(json.dumps(r) + "\n" for r in
                                     synthetic_trace(workload, _request_count(workload))))
            with _bars_hidden():
                report = run_trace_replay([str(trace)], trace_block_size=TRACE_BLOCK, **kw)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    requests = requests_table(report.per_request or [])
    metrics = window_metrics(requests, gpus=spec.gpus, concurrency=workload.concurrency,
                             request_rate=workload.request_rate, source="replay", sla=sla,
                             client_saturated=False,
                             saturation_reason="simulated time: no load client",
                             time_base="simulated")
    return metrics, requests
