"""Wall time of one offline replay evaluation (what the tuner pays per explored configuration).

    uv run python tests/benchmarks/bench_replay.py [--requests 2000] [--repeats 7]

Replays `--requests` requests of sweeps/workloads/chat.yaml's shape on serving/agg_kv.yaml,
disagg_1p1d.yaml and a Llama-3.1-70B TP4 x 2 deployment, and prints the median, min and max
wall time (tables cached after the first call, as in a study).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from dynamo_bench.replay import replay
from dynamo_bench.specs import DeploymentSpec, load_deployment, load_workload, parse_spec

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "error")
    workload = load_workload(REPO / "sweeps" / "workloads" / "chat.yaml").model_copy(
        update={"request_count": args.requests, "concurrency": 32})
    specs = [load_deployment(REPO / "serving" / "agg_kv.yaml"),
             load_deployment(REPO / "serving" / "disagg_1p1d.yaml"),
             parse_spec(DeploymentSpec, {"name": "llama70b-tp4x2", "model": "Llama-3.1-70B",
                                         "router": {"mode": "kv"},
                                         "workers": {"agg": {"tp": 4, "replicas": 2}}})]
    print(f"{'deployment':<16} {'requests':>8} {'median s':>9} {'min s':>7} {'max s':>7} "
          f"{'simulated s':>12}")
    for spec in specs:
        replay(spec, workload)  # warm: builds and caches the tables
        times, sim = [], 0.0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            metrics, _ = replay(spec, workload)
            times.append(time.perf_counter() - t0)
            sim = metrics.duration_s or 0.0
        print(f"{spec.name:<16} {args.requests:>8} {statistics.median(times):>9.3f} "
              f"{min(times):>7.3f} {max(times):>7.3f} {sim:>12.1f}")


if __name__ == "__main__":
    main()
