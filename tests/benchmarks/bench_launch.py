"""Launch-to-ready and teardown times of real mocker stacks, and a stray-process soak.

    uv run python tests/benchmarks/bench_launch.py [--repeats 5] [--cycles 20]

Prints, for serving/agg_kv.yaml and serving/disagg_1p1d.yaml, the median (and min/max) over
`--repeats` launches of: launch-to-ready (every worker registered and one chat completion
answered) and teardown (all process groups gone). Then runs `--cycles` launch/kill cycles that
alternate a clean stop, a worker SIGKILLed before the stop, and a start-up cut short by its
deadline, and counts the processes left behind (by PID, plus any descendant of this process).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import psutil

from dynamo_bench import LaunchError, Stack, load_deployment

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the tests package importable
from tests.helpers import alive  # noqa: E402


def measure(spec_name: str, repeats: int) -> tuple[list[float], list[float]]:
    spec = load_deployment(REPO / "serving" / spec_name)
    ready, teardown = [], []
    for _ in range(repeats):
        with Stack(spec) as stack:
            pids = [p.pid for p in stack.processes()]
        assert stack.ready_s is not None and stack.teardown_s is not None
        assert not alive(pids), f"left running: {alive(pids)}"
        ready.append(stack.ready_s)
        teardown.append(stack.teardown_s)
    return ready, teardown


def soak(cycles: int) -> tuple[int, int, dict[str, int]]:
    specs = [load_deployment(REPO / "serving" / n) for n in ("agg_kv.yaml", "disagg_1p1d.yaml")]
    all_pids: list[int] = []
    kinds = {"clean": 0, "worker-killed": 0, "startup-deadline": 0}
    for i in range(cycles):
        spec = specs[i % 2]
        kind = list(kinds)[i % 3]
        kinds[kind] += 1
        if kind == "startup-deadline":
            stack = Stack(spec, ready_timeout_s=0.3)
            try:
                stack.start()
            except LaunchError:
                pass
            all_pids += [p.pid for p in stack.processes()]
            continue
        with Stack(spec) as stack:
            all_pids += [p.pid for p in stack.processes()]
            if kind == "worker-killed":
                os.kill(stack.processes()[0].pid, signal.SIGKILL)
                time.sleep(0.2)
    descendants = [c.pid for c in psutil.Process().children(recursive=True)
                   if c.status() != psutil.STATUS_ZOMBIE]
    return len(all_pids), len(set(alive(all_pids)) | set(descendants)), kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "warn")
    Stack(load_deployment(REPO / "serving" / "agg.yaml")).start().stop()  # warm caches
    print(f"{'spec':<20} {'ready median s':>15} {'(min-max)':>13} {'teardown median s':>18} "
          f"{'(min-max)':>13}")
    for name in ("agg_kv.yaml", "disagg_1p1d.yaml"):
        ready, down = measure(name, args.repeats)
        print(f"{name:<20} {statistics.median(ready):>15.2f} "
              f"{f'{min(ready):.2f}-{max(ready):.2f}':>13} {statistics.median(down):>18.2f} "
              f"{f'{min(down):.2f}-{max(down):.2f}':>13}")
    t0 = time.monotonic()
    started, stray, kinds = soak(args.cycles)
    print(f"soak: {args.cycles} launch/kill cycles ({', '.join(f'{k}: {v}' for k, v in kinds.items())}),"
          f" {started} processes started, {stray} left running, {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
