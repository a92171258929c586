"""The steady-state window: its definition on hand-made tables, and what it buys in replay."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from dynamo_bench.loadgen.steady import steady_window, tokens_in_window, window_metrics
from dynamo_bench.replay import replay, synthetic_trace
from dynamo_bench.specs import DeploymentSpec, LengthSpec, WorkloadSpec, parse_spec


def closed_loop(c: int, n: int, burst_ttft: float = 900.0) -> pd.DataFrame:
    """n requests at concurrency c, each 1 s long with 100 output tokens; the first wave
    starts at t=0 and queues (TTFT `burst_ttft`), later requests see 50 ms."""
    rows = []
    free = [0.0] * c
    for i in range(n):
        slot = min(range(c), key=lambda s: free[s])
        start = free[slot]
        ttft = burst_ttft if i < c else 50.0
        end = start + 1.0 + (i % 7) * 0.01
        free[slot] = end
        rows.append({"start_ns": int(start * 1e9), "end_ns": int(end * 1e9), "ttft_ms": ttft,
                     "itl_ms": 10.0, "e2e_ms": (end - start) * 1e3, "isl": 100, "osl": 100,
                     "cached_tokens": 0, "cancelled": False, "error": None})
    return pd.DataFrame(rows)


def test_the_first_wave_and_the_drain_are_outside_the_window() -> None:
    req = closed_loop(c=4, n=40)
    w = steady_window(req, 4)
    assert w.steady
    first_wave_end = req.head(4)["end_ns"].max()
    assert w.start_ns == first_wave_end and w.end_ns == req["start_ns"].max()
    inside = req[w.mask]
    assert (inside["ttft_ms"] == 50.0).all() and 20 <= len(inside) < 36
    m = window_metrics(req, gpus=2, concurrency=4, request_rate=None, source="replay")
    assert m.ttft_ms_p90 == 50.0 and m.window_requests == len(inside) and m.steady_state
    # 4 streams of 100 tokens a second
    assert m.output_tok_s == pytest.approx(400, rel=0.05)
    assert m.output_tok_s_per_gpu == pytest.approx(m.output_tok_s / 2)
    assert tokens_in_window(req, w) == pytest.approx(m.output_tok_s * w.duration_s)


def test_too_short_a_run_uses_every_request_and_says_so() -> None:
    req = closed_loop(c=4, n=6)
    m = window_metrics(req, gpus=1, concurrency=4, request_rate=None, source="replay")
    assert m.steady_state is False and m.window_requests == 6 == m.requests
    assert m.ttft_ms_p90 == pytest.approx(np.percentile(req["ttft_ms"], 90))


def test_open_loop_drops_the_first_tenth_of_the_arrivals() -> None:
    req = closed_loop(c=1, n=50)
    w = steady_window(req, None)
    span = req["start_ns"].max() - req["start_ns"].min()
    assert w.start_ns == pytest.approx(req["start_ns"].min() + 0.1 * span, abs=1)
    assert req[w.mask]["start_ns"].min() >= w.start_ns


def test_the_replay_trace_staggers_the_first_wave_and_varies_lengths() -> None:
    w = WorkloadSpec(isl=LengthSpec(mean=500, stddev=50), osl=LengthSpec(mean=100, stddev=10),
                     concurrency=8, request_count=80, seed=3)
    t = synthetic_trace(w, 80)
    assert len(t) == 80 and all(r["timestamp"] == 0 for r in t)
    first = [r["output_length"] for r in t[:8]]
    assert first == sorted(first) or max(first) / min(first) > 4  # staggered by (i+1)/c
    later = [r["input_length"] for r in t[8:]]
    assert 20 < statistics.pstdev(later) < 100
    assert synthetic_trace(w, 80) == t  # seeded


def test_shared_prefixes_share_block_hashes() -> None:
    from dynamo_bench.replay import TRACE_BLOCK
    from dynamo_bench.specs import PrefixSpec

    w = WorkloadSpec(isl=LengthSpec(mean=64), osl=LengthSpec(mean=8), concurrency=2,
                     request_count=40, prefix=PrefixSpec(pool_size=2, length=160))
    t = synthetic_trace(w, 40)
    heads = {tuple(r["hash_ids"][:160 // TRACE_BLOCK]) for r in t}
    assert len(heads) == 2  # two prefixes
    tails = [tuple(r["hash_ids"][160 // TRACE_BLOCK:]) for r in t]
    assert len(set(tails)) == 40  # every question is its own
    assert all(r["input_length"] == 224 for r in t)


def test_the_p90_does_not_move_when_requests_per_slot_double() -> None:
    """With the first wave inside the statistics, a disaggregated replay's TTFT p90 fell by a
    third when the requests per slot doubled; from the steady-state window it holds."""
    spec = parse_spec(DeploymentSpec, {
        "model": "Llama-3.1-70B", "gpu": "h100_sxm", "mode": "disagg", "timing": "roofline",
        "workers": {"prefill": {"tp": 4}, "decode": {"tp": 4}}})
    c = 48
    window: dict[int, list[float]] = {10: [], 20: []}
    whole: dict[int, list[float]] = {10: [], 20: []}
    tps: dict[int, list[float]] = {10: [], 20: []}
    for k in (10, 20):
        for seed in range(3):
            w = WorkloadSpec(isl=LengthSpec(mean=3000, stddev=300),
                             osl=LengthSpec(mean=300, stddev=30), concurrency=c,
                             request_count=c * k, seed=seed)
            m, req = replay(spec, w)
            assert m.steady_state
            window[k].append(m.ttft_ms_p90)
            whole[k].append(float(np.percentile(req["ttft_ms"], 90)))
            tps[k].append(m.output_tok_s_per_gpu)
    med = {k: statistics.median(v) for k, v in window.items()}
    assert med[20] == pytest.approx(med[10], rel=0.05)
    assert statistics.median(tps[20]) == pytest.approx(statistics.median(tps[10]), rel=0.03)
    # the whole run's p90 is what the first wave sets: it moves with the request count
    assert statistics.median(whole[10]) > 1.2 * statistics.median(whole[20])
