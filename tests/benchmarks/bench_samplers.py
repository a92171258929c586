"""Search efficiency of the samplers on a finite space with a known answer.

    uv run python tests/benchmarks/bench_samplers.py [--seeds 5] [--fraction 0.35]

1. Ground truth: every configuration of sweeps/bench/samplers.yaml (about 900: agg and disagg
   layouts of Qwen3-32B on 8 x H100, batch limits, block size, router) is evaluated in replay
   with the same per-trial load search the tuner runs, once, and cached in
   $DYNAMO_BENCH_CACHE/bench-samplers/truth-<hash>.json.
2. Each sampler (TPE, the default; NSGA-II; random) runs the real `Tuner` for `--fraction` of
   the space, per seed, with an evaluator that looks trials up in the ground truth (so a trial
   costs what the sampler costs, not a replay). TPE runs as the tuner runs it: with the
   performance model's start points enqueued. Duplicated configurations count as trials.
3. Printed per sampler, median over seeds: trials to reach 99% of the best feasible output
   tok/s per GPU (as a share of the space), and the hypervolume of the found Pareto front
   (tok/s per user x tok/s per GPU, over every feasible probe seen) relative to the true
   front's, after 5%, 10% and 20% of the space.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynamo_bench.report.pareto import X, Y, hypervolume, pareto_mask
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.evaluate import Evaluation, Evaluator, ReplayEvaluator
from dynamo_bench.tune.space import deployment_for, enumerate_params, knobs_from_params
from dynamo_bench.tune.sweep import SweepSpec
from dynamo_bench.tune.sweep_file import load_sweep
from dynamo_bench.tune.tuner import TuneOptions, Tuner

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "sweeps" / "bench" / "samplers.yaml"


def _key(spec: DeploymentSpec) -> str:
    return spec.model_dump_json(exclude={"name"})


def ground_truth(sweep: SweepSpec, tier: str) -> dict[str, dict[str, Any]]:
    """Deployment key -> Evaluation attrs, for every configuration of the space."""
    digest = hashlib.sha256(sweep.model_dump_json().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("DYNAMO_BENCH_CACHE", Path.home() / ".cache" / "dynamo-bench"))
    path = cache / "bench-samplers" / f"truth-{tier}-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    sla = sweep.slas()[tier]
    ev = ReplayEvaluator(sweep.workload, sweep.load)
    truth: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    params = list(enumerate_params(sweep))
    for i, p in enumerate(params):
        spec = deployment_for(sweep, knobs_from_params(sweep, p))
        key = _key(spec)
        if key not in truth:
            truth[key] = ev.evaluate(spec, sla, Path(tempfile.gettempdir())).to_attrs()
        if (i + 1) % 100 == 0:
            print(f"  ground truth: {i + 1}/{len(params)} configurations, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth))
    return truth


class LookupEvaluator(Evaluator):
    """Answers from the ground truth: a trial costs only the sampler's own time."""

    fidelity = "replay"

    def __init__(self, sweep: SweepSpec, truth: dict[str, dict[str, Any]]) -> None:
        super().__init__(sweep.workload, sweep.load)
        self.truth = truth
        self.seen: list[str] = []

    def session(self, spec: DeploymentSpec, sla: SLA, out_dir: Path
                ) -> contextlib.AbstractContextManager[Callable[[int], Metrics]]:
        raise NotImplementedError  # evaluate() is overridden: nothing to measure

    def evaluate(self, spec: DeploymentSpec, sla: SLA, out_dir: Path) -> Evaluation:
        key = _key(spec)
        self.seen.append(key)
        return Evaluation.from_attrs(self.truth[key])


def _front_hv(evals: list[dict[str, Any]]) -> float:
    pts = [(p[X], p[Y]) for e in evals for p in e["points"]
           if p["feasible"] and p["usable"] and p[X] and p[Y]]
    if not pts:
        return 0.0
    x, y = np.array(pts).T
    m = pareto_mask(x, y)
    return hypervolume(x[m], y[m])


def run_sampler(sweep: SweepSpec, tier: str, truth: dict[str, dict[str, Any]], sampler: str,
                seed: int, trials: int) -> list[str]:
    """The deployment keys the sampler evaluated, in trial order (duplicates included)."""
    s = sweep.model_copy(update={
        "search": sweep.search.model_copy(update={
            "sampler": sampler, "seed": seed,
            "start_points": sweep.search.start_points if sampler == "tpe" else 0}),
        "budget": sweep.budget.model_copy(update={"trials": trials, "patience": None})})
    lookup = LookupEvaluator(s, truth)
    with tempfile.TemporaryDirectory() as tmp:
        tuner = Tuner(s, Path(tmp), options=TuneOptions(verify=False, explore_evaluator=lookup))
        tuner.explore(tier)
    return lookup.seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.35,
                        help="trials per run, as a share of the space")
    parser.add_argument("--tier", default="interactive")
    parser.add_argument("--samplers", default="tpe,nsga2,random")
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "error")
    sweep = load_sweep(SWEEP)
    size = sum(1 for _ in enumerate_params(sweep))
    print(f"space: {size} configurations ({SWEEP.relative_to(REPO)}), tier {args.tier}: "
          f"{sweep.sla[args.tier]}")
    truth = ground_truth(sweep, args.tier)
    values = [(e["best"] or {}).get("output_tok_s_per_gpu") or 0.0 for e in truth.values()
              if e["status"] == "complete"]
    optimum = max(values)
    true_hv = _front_hv(list(truth.values()))
    feasible = len(values)
    print(f"ground truth: {len(truth)} distinct deployments, {feasible} meet the SLA, best "
          f"{optimum:.1f} output tok/s per GPU")
    trials = int(round(args.fraction * size))
    marks = [0.05, 0.10, 0.20]
    rows = []
    for sampler in args.samplers.split(","):
        reach, hv = [], {m: [] for m in marks}
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            seen = run_sampler(sweep, args.tier, truth, sampler, seed, trials)
            vals = [((truth[k]["best"] or {}).get("output_tok_s_per_gpu") or 0.0)
                    if truth[k]["status"] == "complete" else 0.0 for k in seen]
            hit = next((i + 1 for i, v in enumerate(np.maximum.accumulate(vals))
                        if v >= 0.99 * optimum), None)
            reach.append(hit / size if hit else float("inf"))
            for m in marks:
                n = int(round(m * size))
                hv[m].append(_front_hv([truth[k] for k in seen[:n]]) / true_hv)
        wall = (time.perf_counter() - t0) / args.seeds
        med = statistics.median(reach)
        rows.append((sampler, med, [statistics.median(hv[m]) for m in marks], reach, wall))
    print()
    print(f"{'sampler':<8} {'trials to 99% (share of space)':>31} "
          + " ".join(f"{'HV@' + format(m, '.0%'):>8}" for m in marks)
          + f"  {'s/run':>6}  per seed")
    for sampler, med, hvs, reach, wall in rows:
        shown = f"{med:.1%} ({med * size:.0f})" if med != float('inf') else f"> {args.fraction:.0%}"
        print(f"{sampler:<8} {shown:>31} " + " ".join(f"{h:>8.3f}" for h in hvs)
              + f"  {wall:>6.1f}  " + ", ".join("-" if r == float("inf") else f"{r:.1%}"
                                               for r in reach))


if __name__ == "__main__":
    main()
