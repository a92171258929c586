"""AIPerf's cost on this machine, and how far its figures drift from the server's.

    uv run python tests/benchmarks/bench_aiperf.py [--levels 1,8,16,32,64] [--repeats 3]

Against serving/agg_kv.yaml (two mocker workers), for each concurrency: AIPerf's start-up
(process start to its first request, warm-up included), its tail (last response to exit), and
the client-minus-server gaps of the TTFT and ITL means (server: the frontend's own histograms
over the same run), with the saturation verdict. Medians over `--repeats` runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from dynamo_bench import load_deployment, serve, target_for
from dynamo_bench.loadgen.bench import measure
from dynamo_bench.specs import LengthSpec, WorkloadSpec

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spec", default=str(REPO / "serving" / "agg_kv.yaml"))
    args = parser.parse_args()
    spec = load_deployment(args.spec)
    print(f"{'conc':>5} {'start-up s':>11} {'tail s':>7} {'client ttft':>12} {'server ttft':>12} "
          f"{'gap ms':>7} {'client itl':>11} {'server itl':>11} {'gap ms':>7} {'tok/s':>7} "
          f"{'saturated':>10}")
    with serve(spec) as stack, tempfile.TemporaryDirectory() as tmp:
        target = target_for(stack)
        for level in [int(x) for x in args.levels.split(",")]:
            rows = []
            for r in range(args.repeats):
                w = WorkloadSpec(isl=LengthSpec(mean=256), osl=LengthSpec(mean=64),
                                 concurrency=level, request_count=max(48, 6 * level),
                                 warmup_requests=level, seed=r)
                p = measure(target, w, Path(tmp) / f"c{level}-{r}")
                m, req = p.metrics, p.requests
                first = int(req["start_ns"].min()) if len(req) else None
                assert p.aiperf_started_ns and p.aiperf_ended_ns
                # the warm-up's requests come before the profiling ones: count from the first
                # request of any phase, read from AIPerf's records
                import json
                starts = [json.loads(line)["metadata"]["request_start_ns"] for line in
                          open(p.run_dir / "aiperf" / "profile_export.jsonl")]
                ends = [json.loads(line)["metadata"]["request_end_ns"] for line in
                        open(p.run_dir / "aiperf" / "profile_export.jsonl")]
                rows.append({
                    "startup": (min(starts) - p.aiperf_started_ns) / 1e9,
                    "tail": (p.aiperf_ended_ns - max(ends)) / 1e9,
                    "ttft": m.ttft_ms_mean, "sttft": m.server_ttft_ms_mean,
                    "itl": m.itl_ms_mean, "sitl": m.server_itl_ms_mean,
                    "tps": m.output_tok_s, "sat": m.client_saturated, "first": first})
            med = {k: statistics.median(r[k] for r in rows)
                   for k in ("startup", "tail", "ttft", "sttft", "itl", "sitl", "tps")}
            sat = sum(bool(r["sat"]) for r in rows)
            print(f"{level:>5} {med['startup']:>11.1f} {med['tail']:>7.1f} {med['ttft']:>12.1f} "
                  f"{med['sttft']:>12.1f} {med['ttft'] - med['sttft']:>7.1f} {med['itl']:>11.2f} "
                  f"{med['sitl']:>11.2f} {med['itl'] - med['sitl']:>7.2f} {med['tps']:>7.0f} "
                  f"{f'{sat}/{len(rows)}':>10}")


if __name__ == "__main__":
    main()
