"""Live mocker runs (real stack + AIPerf) against the offline replay, same timing tables.

    uv run python tests/benchmarks/compare_live_replay.py [--rates 1,3,5] [--concurrency 1,4,8]

For serving/agg.yaml, agg_kv.yaml and disagg_1p1d.yaml (Qwen3-8B on a simulated H100, roofline
tables), at loads below the client's saturation point (open-loop Poisson arrivals by default,
the same process in both fidelities; in a closed loop the replay's requests start together and
stay in lockstep, which live jitter breaks, so closed-loop TTFTs under load differ by design): TTFT p50, ITL p50 and output throughput
from both fidelities and their relative difference (replay / live - 1). The replay is given the
input length the live run actually sent (the chat template adds a few tokens). In an open loop
the throughput is the realized arrival rate times the output length while the server keeps up,
so its difference there reflects the two Poisson samples (see the realized req/s columns), not
the server. "TTFT - ovh"
is the live TTFT less the measured non-engine overhead (client TTFT minus the frontend's
request-plane round trip: HTTP, tokenisation, routing), which the replay does not simulate.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from dynamo_bench import load_deployment, serve, target_for
from dynamo_bench.loadgen.bench import sweep
from dynamo_bench.replay import replay
from dynamo_bench.specs import LengthSpec, WorkloadSpec

REPO = Path(__file__).resolve().parents[2]


def rel(replayed: float | None, live: float | None) -> str:
    if not replayed or not live or math.isnan(replayed) or math.isnan(live):
        return "-"
    return f"{(replayed / live - 1) * 100:+.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1,3,5", help="open-loop Poisson rates, req/s")
    parser.add_argument("--concurrency", default="", help="closed-loop levels (e.g. 1,4,8)")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--isl", type=int, default=2048)
    parser.add_argument("--specs", default="agg.yaml,agg_kv.yaml,disagg_1p1d.yaml")
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "error")
    loads = [("request_rate", float(x)) for x in args.rates.split(",") if x] + \
        [("concurrency", int(x)) for x in args.concurrency.split(",") if x]
    print(f"{'deployment':<18} {'load':>8} | {'TTFT p50 live':>13} {'-ovh':>6} {'replay':>7} "
          f"{'diff':>6} {'vs -ovh':>7} | "
          f"{'ITL p50 live':>12} {'replay':>7} {'diff':>6} | {'tok/s live':>10} {'replay':>7} "
          f"{'diff':>6} | {'req/s live':>10} {'replay':>7}")
    for name in args.specs.split(","):
        spec = load_deployment(REPO / "serving" / name)
        w = WorkloadSpec(isl=LengthSpec(mean=args.isl), osl=LengthSpec(mean=128), concurrency=1,
                         request_count=args.requests, warmup_requests=2)
        with serve(spec) as stack, tempfile.TemporaryDirectory() as tmp:
            points = sweep(target_for(stack), w, loads, Path(tmp))  # type: ignore[arg-type]
        for p in points:
            live = p.metrics
            rw = p.workload.model_copy(update={
                "isl": LengthSpec(mean=round(live.isl_mean or args.isl)),
                "request_count": max(args.requests, 2000)})
            sim, _ = replay(spec, rw)
            flag = " (client saturated)" if live.client_saturated else ""
            engine_ttft = live.ttft_ms_p50 - live.overhead_ms if live.overhead_ms is not None \
                else float("nan")
            print(f"{spec.name:<18} {p.label:>8} | {live.ttft_ms_p50:>13.1f} "
                  f"{engine_ttft:>6.1f} {sim.ttft_ms_p50:>7.1f} "
                  f"{rel(sim.ttft_ms_p50, live.ttft_ms_p50):>6} "
                  f"{rel(sim.ttft_ms_p50, engine_ttft):>7} | "
                  f"{live.itl_ms_p50:>12.2f} {sim.itl_ms_p50:>7.2f} "
                  f"{rel(sim.itl_ms_p50, live.itl_ms_p50):>6} | {live.output_tok_s:>10.0f} "
                  f"{sim.output_tok_s:>7.0f} {rel(sim.output_tok_s, live.output_tok_s):>6} | "
                  f"{live.request_s:>10.2f} {sim.request_s:>7.2f}{flag}")


if __name__ == "__main__":
    main()
