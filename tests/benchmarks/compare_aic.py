"""The calibrated roofline against AIConfigurator 0.12.0's database.

    uv run python tests/benchmarks/compare_aic.py [--backend vllm] [--precision bf16]

Over dense models (Qwen3-0.6B/8B/32B, Llama-3.1-8B/70B) x {H100 SXM, H200} x TP {1, 2, 4, 8} where the
model fits: prefill time of one request (1k and 4k tokens) and decode step time (batch 1, 16
and 64 at a 1k context). Prints every point, then the median absolute relative error per
metric (ours / AIConfigurator - 1). AIConfigurator's TTFT is the prefill pass alone (no queueing
and no per-request cost), compared with `prefill_ms` less the fitted per-request cost.
"""

from __future__ import annotations

import argparse
import statistics

from dynamo_bench.perf.aic import AICUnavailable, aic_predict
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import memory_fit
from dynamo_bench.perf.models import CATALOGUE
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms

MODELS = ["Qwen3-0.6B", "Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-8B", "Qwen3-32B"]
GPU_TYPES = ["h100_sxm", "h200_sxm"]


def grid(backend: str, precision: str) -> list[dict]:
    rows = []
    for name in MODELS:
        arch = ModelArch.from_config(CATALOGUE[name].config, name)
        for gpu in GPU_TYPES:
            for tp in (1, 2, 4, 8):
                hw = Hardware(GPUS[gpu], tp=tp, precision=precision, backend=backend)  # type: ignore[arg-type]
                if not memory_fit(arch, hw).fits:
                    continue
                cases = [("ttft", 1024, 1), ("ttft", 4096, 1), ("itl", 1024, 1),
                         ("itl", 1024, 16), ("itl", 1024, 64)]
                for metric, isl, batch in cases:
                    try:
                        ref = aic_predict(name, gpu, backend, tp=tp, isl=isl, batch=batch,
                                          precision=precision)[f"{metric}_ms"]
                    except AICUnavailable as e:
                        print(f"skip {name} {gpu} tp{tp}: {e}")
                        break
                    # AIConfigurator's prefill has no per-request cost: like with like
                    ours = prefill_ms(arch, hw, isl) - hw.eff.request_ms if metric == "ttft" \
                        else decode_step_ms(arch, hw, batch, isl)
                    rows.append({"model": name, "gpu": gpu, "tp": tp, "metric": metric,
                                 "isl": isl, "batch": batch, "ours": ours, "aic": ref,
                                 "err": ours / ref - 1})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="vllm")
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    rows = grid(args.backend, args.precision)
    configs = {(r["model"], r["gpu"], r["tp"]) for r in rows}
    print(f"{'model':<14} {'gpu':<9} {'tp':>2} {'metric':<6} {'isl':>5} {'batch':>5} "
          f"{'ours ms':>8} {'AIC ms':>8} {'error':>7}")
    for r in rows:
        print(f"{r['model']:<14} {r['gpu']:<9} {r['tp']:>2} {r['metric']:<6} {r['isl']:>5} "
              f"{r['batch']:>5} {r['ours']:>8.2f} {r['aic']:>8.2f} {r['err'] * 100:>+6.0f}%")
    print(f"\n{len(configs)} configurations (model x GPU x TP), {len(rows)} points, "
          f"{args.backend} {args.precision}")
    for metric in ("ttft", "itl"):
        errs = [abs(r["err"]) for r in rows if r["metric"] == metric]
        print(f"{metric.upper():<5} median |error| {statistics.median(errs) * 100:5.1f}%   "
              f"p90 {sorted(errs)[int(0.9 * (len(errs) - 1))] * 100:5.1f}%   n={len(errs)}")


if __name__ == "__main__":
    main()
