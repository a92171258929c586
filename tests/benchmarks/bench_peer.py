"""dynamo-bench's pick against AIConfigurator's on the peer problems, scored the same way.

    uv run python tests/benchmarks/bench_peer.py [--sweep sweeps/peer-llama70b-h100.yaml ...]

For each sweep (by default the two peer problems: `sweeps/peer-llama70b-h100.yaml`, the
question AIConfigurator answers out of the box, and `sweeps/peer-rag-llama8b-h100.yaml`, RAG
traffic over a corpus, where the router and the prefix cache decide), runs a full study in
replay (`tune --no-verify`, with the side by side) in a temporary folder and prints the table:
each pick's tokens/s per GPU under the study's replay and under the calibrated roofline,
AIConfigurator's own estimate, the ratio ours / AIConfigurator's best, and the wall time of the
study next to that of AIConfigurator's search alone. Prints, does not assert.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dynamo_bench import api
from dynamo_bench.tune.peer import EVALUATORS, question, stored

REPO = Path(__file__).resolve().parents[2]
DEFAULT = [REPO / "sweeps" / "peer-llama70b-h100.yaml",
           REPO / "sweeps" / "peer-rag-llama8b-h100.yaml"]


def aic_search_seconds(sweep_path: Path) -> float:
    """Wall time of AIConfigurator's own search of the first tier's question."""
    from aiconfigurator.cli.api import cli_default

    from dynamo_bench.perf.aic import quiet

    sweep = api.load_sweep(sweep_path)
    q = question(sweep, next(iter(sweep.slas().values())))
    t0 = time.perf_counter()
    with quiet():
        cli_default(**q)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, action="append")
    args = parser.parse_args()
    for path in args.sweep or DEFAULT:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            study = api.tune(path, Path(tmp) / "study", verify=False, peer=True)
            wall = time.perf_counter() - t0
            record = study.record()
            aic_s = aic_search_seconds(path)
            print(f"\n{path.name}: study {wall:.0f} s (explore + side by side), "
                  f"AIConfigurator's search alone {aic_s:.0f} s per tier")
            for tier in record.slas:
                c = stored(record.meta, tier)
                if c is None or c.skipped:
                    print(f"  {tier}: not compared ({c.skipped if c else 'no comparison'})")
                    continue
                for p in c.picks:
                    scores = "  ".join(
                        f"{e} {p.scores[e].tok_s_per_gpu or 0:8.1f}" for e in EVALUATORS)
                    est = p.own_estimate_tok_s_per_gpu
                    print(f"  {tier:<12} {p.source:<15} {p.label[:58]:<58} {scores}  "
                          f"AIC's estimate {est if est is None else round(est, 1)}")
                ratios = ", ".join(f"{e} {c.ratio(e):.2f}x" for e in EVALUATORS
                                   if c.ratio(e) is not None)
                print(f"  {tier:<12} ours / AIConfigurator's best: {ratios}")


if __name__ == "__main__":
    main()
