"""Accuracy of the performance model against published GPU measurements, per provider.

    uv run python tests/benchmarks/bench_accuracy.py            # held-out rows (the default)
    uv run python tests/benchmarks/bench_accuracy.py --rows all # every usable row

Each row of `dynamo_bench/perf/data/published.csv` (citations: `published_sources.md`) is
predicted the way the tool predicts anything (`dynamo_bench.calibrate.predict`): low-load TTFT
and ITL from the worker's timing tables, maximum throughput from the offline replay of the
published configuration at saturation. Three providers: the default chain (`auto`: measured
tables > AIConfigurator's database where it covers the worker > the calibrated roofline), the
calibrated roofline alone, and AIConfigurator alone (rows it covers). The calibration was fitted
on the `fit` half of the rows only; by default this reports the `holdout` half.

Prints every row, then median and p90 |error| per class, per GPU and per provider, the chain
against AIConfigurator alone on the rows AIConfigurator covers, and the floors of the issue
(median |error| <= 12% on low-load TTFT and ITL, <= 15% on maximum throughput, never worse than
AIConfigurator alone where it covers). Prints, does not assert.
"""

from __future__ import annotations

import argparse
import statistics
import time

from dynamo_bench.calibrate import CLASSES, predict, published_rows

PROVIDERS = ("auto", "roofline", "aiconfigurator")
FLOORS = {"ttft_low_load": 0.12, "itl_low_load": 0.12, "max_throughput": 0.15}


def p90(v: list[float]) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def summary(errs: list[float]) -> str:
    if not errs:
        return "    -         -   n=0"
    a = [abs(e) for e in errs]
    return (f"{statistics.median(a) * 100:5.1f}%  {p90(a) * 100:6.1f}%  "
            f"signed {statistics.median(errs) * 100:+6.1f}%  n={len(a)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", choices=("holdout", "fit", "all"), default="holdout")
    parser.add_argument("--quiet", action="store_true", help="only the summary tables")
    args = parser.parse_args()
    every = published_rows()
    rows = [r for r in every if r.excluded is None
            and (args.rows == "all" or r.split == args.rows)]
    print(f"{len(every)} published rows, {sum(r.excluded is None for r in every)} usable "
          f"({len({r.source for r in every if r.excluded is None})} sources); scoring "
          f"{len(rows)} ({args.rows})")
    t0 = time.perf_counter()
    err: dict[str, dict[str, float]] = {p: {} for p in PROVIDERS}
    used: dict[str, str] = {}
    for r in rows:
        line = []
        for p in PROVIDERS:
            value, provider = predict(r, p)
            if value is None:
                line.append(f"{p}: -")
                continue
            err[p][r.id] = value / r.value - 1
            if p == "auto":
                used[r.id] = provider
            line.append(f"{p}: {value:9.1f} ({err[p][r.id] * 100:+5.0f}%)")
        if not args.quiet:
            print(f"{r.id:<58} {r.metric:<15} {r.value:9.1f}  " + "  ".join(line))
    print(f"\npredicted in {time.perf_counter() - t0:.0f} s\n")

    def table(title: str, key) -> None:
        print(title)
        groups = sorted({key(r) for r in rows})
        for g in groups:
            for p in PROVIDERS:
                e = [err[p][r.id] for r in rows if key(r) == g and r.id in err[p]]
                print(f"  {g:<32} {p:<15} {summary(e)}")
        print()

    table("median |error|, p90 |error| by class", lambda r: r.metric)
    table("by class and GPU", lambda r: f"{r.metric} {r.gpu}")
    print("the chain's provider per row: "
          + ", ".join(f"{p} {sum(v == p for v in used.values())}"
                      for p in ("measured", "aiconfigurator", "roofline")))
    print("\nthe chain against AIConfigurator alone, on the rows AIConfigurator covers")
    for c in CLASSES:
        ids = [r.id for r in rows if r.metric == c and r.id in err["aiconfigurator"]]
        print(f"  {c:<16} chain {summary([err['auto'][i] for i in ids])}   "
              f"AIConfigurator {summary([err['aiconfigurator'][i] for i in ids])}")
    print("\nfloors (default chain, median |error|)")
    for c in CLASSES:
        e = [abs(err["auto"][r.id]) for r in rows if r.metric == c and r.id in err["auto"]]
        ids = [r.id for r in rows if r.metric == c and r.id in err["aiconfigurator"]]
        m = statistics.median(e) if e else float("nan")
        chain_aic = statistics.median([abs(err["auto"][i]) for i in ids]) if ids else 0.0
        alone = statistics.median([abs(err["aiconfigurator"][i]) for i in ids]) if ids \
            else 0.0
        print(f"  {c:<16} {m * 100:5.1f}% (floor {FLOORS[c] * 100:.0f}%): "
              f"{'met' if m <= FLOORS[c] else 'NOT met'}; where AIConfigurator covers: "
              f"{chain_aic * 100:.1f}% vs {alone * 100:.1f}% alone: "
              f"{'not worse' if chain_aic <= alone + 1e-9 else 'WORSE'}")
    missing = {(r.metric, r.gpu) for r in every if r.excluded is None}
    for c in CLASSES:
        gpus = sorted(g for m, g in missing if m == c)
        print(f"  coverage {c:<16} GPUs: {', '.join(gpus)}")


if __name__ == "__main__":
    main()
