"""Profile a live deployment the way Dynamo's pre-deployment profiler does.

Prefill: one request at a time (concurrency 1) at several input lengths; the TTFT less the
measured non-engine overhead is the prefill time. Decode: for each batch size b and context
length, exactly b requests start together (one round, no warm-up) and decode side by side. The
step time at batch b is the median gap between streamed tokens over the second half of each
stream: by then every prompt of the round has been prefilled, so the steps are pure decode. (A
request's whole-stream ITL, or a longer closed loop, would also count the prefill chunks that
share decode steps with it.) Each point is a real AIPerf run (loadgen.bench.measure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynamo_bench.loadgen.aiperf import Target
from dynamo_bench.loadgen.artifacts import inter_chunk_latencies
from dynamo_bench.loadgen.bench import LoadPoint, Progress, measure
from dynamo_bench.perf.fit import DecodePoint, PrefillPoint
from dynamo_bench.specs.workload import LengthSpec, WorkloadSpec


@dataclass(frozen=True)
class ProfilePlan:
    """Where to measure. Lengths are tokens; `batches` are concurrencies."""

    isl: list[int] = field(default_factory=lambda: [256, 1024, 4096])
    batches: list[int] = field(default_factory=lambda: [1, 8, 24])
    contexts: list[int] = field(default_factory=lambda: [512, 2048])
    decode_osl: int = 128
    prefill_requests: int = 8


@dataclass
class ProfileResult:
    prefill: list[PrefillPoint]
    decode: list[DecodePoint]
    runs: list[LoadPoint]


def profile_target(target: Target, plan: ProfilePlan, out_dir: Path, *,
                   progress: Progress | None = None) -> ProfileResult:
    """Run the plan against `target`; every run keeps its folder under `out_dir`."""
    prefill: list[PrefillPoint] = []
    decode: list[DecodePoint] = []
    runs: list[LoadPoint] = []
    seed = 0
    for isl in plan.isl:
        seed += 1
        w = WorkloadSpec(isl=LengthSpec(mean=isl), osl=LengthSpec(mean=2), concurrency=1,
                         request_count=plan.prefill_requests, warmup_requests=1, seed=seed)
        p = measure(target, w, out_dir / f"prefill_isl{isl}", progress=progress)
        runs.append(p)
        m = p.metrics
        assert m.ttft_ms_p50 is not None
        ttft = m.ttft_ms_p50 - (m.overhead_ms or 0.0)
        prefill.append(PrefillPoint(isl=m.isl_mean or isl, ttft_ms=max(ttft, 0.1)))
    for ctx in plan.contexts:
        for b in plan.batches:
            seed += 1
            w = WorkloadSpec(isl=LengthSpec(mean=ctx), osl=LengthSpec(mean=plan.decode_osl),
                             concurrency=b, request_count=max(b, 4), seed=seed)
            p = measure(target, w, out_dir / f"decode_ctx{ctx}_b{b}", progress=progress)
            runs.append(p)
            m = p.metrics
            gaps = [g for stream in inter_chunk_latencies(p.run_dir / "aiperf")
                    for g in stream[len(stream) // 2:]]
            step = float(np.median(gaps)) * target.speedup_ratio if gaps else m.itl_ms_p50
            assert step is not None
            mean_ctx = (m.isl_mean or ctx) + 0.75 * plan.decode_osl
            decode.append(DecodePoint(batch=b, context=mean_ctx, itl_ms=step))
    return ProfileResult(prefill, decode, runs)
