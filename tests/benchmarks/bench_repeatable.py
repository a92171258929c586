"""Does the same configuration score the same in replay, run after run?

    uv run python tests/benchmarks/bench_repeatable.py [--runs 8] [--configs 12]

Dynamo's replay breaks KV-router ties between equal workers at random (it has no seed for
it), so a probe near an SLA limit can land on either side of it. The replay evaluator replays
such probes `load.replay_repeats` times and keeps the median run. This script evaluates
KV-routed multi-worker configurations of sweeps/bench/samplers.yaml with fresh evaluators
(no shared cache, no probe store: tune/probes.py), `--runs` times each, with `replay_repeats` 1 (no repeats) and with the
sweep's setting, and prints how many configurations always scored the same (within 0.5%),
and the largest and median spread (max / min - 1). With the probe store (the default), a
configuration scores exactly the same in every later run on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from dynamo_bench.tune.evaluate import ReplayEvaluator
from dynamo_bench.tune.space import deployment_for, enumerate_params, knobs_from_params
from dynamo_bench.tune.sweep_file import load_sweep

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "sweeps" / "bench" / "samplers.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "error")
    sweep = load_sweep(SWEEP)
    tier, sla = next(iter(sweep.slas().items()))
    specs = []
    for p in enumerate_params(sweep):
        spec = deployment_for(sweep, knobs_from_params(sweep, p))
        if spec.router.mode == "kv" and any(g.replicas > 1 for g in spec.workers.values()):
            specs.append(spec)
    random.Random(args.seed).shuffle(specs)
    settings = {"no repeats": 1, f"repeats {sweep.load.replay_repeats}":
                sweep.load.replay_repeats}
    print(f"{len(specs)} KV-routed multi-worker configurations in {SWEEP.relative_to(REPO)}; "
          f"{args.runs} fresh evaluations of each of the first feasible {args.configs}, "
          f"tier {tier}: {sla}")
    chosen = []
    for spec in specs:  # feasible ones: an infeasible configuration always scores 0
        ev = ReplayEvaluator(sweep.workload, sweep.load, store=None).evaluate(spec, sla,
                                                                           Path("."))
        if ev.status == "complete":
            chosen.append(spec)
        if len(chosen) == args.configs:
            break
    for name, repeats in settings.items():
        load = sweep.load.model_copy(update={"replay_repeats": repeats})
        same, spreads, t0 = 0, [], time.perf_counter()
        for spec in chosen:
            scores = []
            for _ in range(args.runs):
                fresh = ReplayEvaluator(sweep.workload, load, store=None)
                ev = fresh.evaluate(spec, sla, Path("."))
                scores.append(round(float((ev.best or {}).get("output_tok_s_per_gpu") or 0), 6))
            spread = max(scores) / min(scores) - 1 if min(scores) > 0 else float("inf")
            spreads.append(spread)
            same += spread <= 0.005
        wall = time.perf_counter() - t0
        print(f"{name:>12}: {same}/{len(chosen)} configurations always scored the same (0.5%); "
              f"largest spread {max(spreads):.1%}, median {sorted(spreads)[len(spreads) // 2]:.1%}"
              f"; {wall:.0f} s")


if __name__ == "__main__":
    main()
