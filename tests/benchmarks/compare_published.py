"""The roofline model against published, measured batch-1 latencies.

    uv run python tests/benchmarks/compare_published.py

Each row is a number read in its source (see README, "Performance model": sources [1]-[4]);
ours is `prefill_ms` (TTFT, one request) or `decode_step_ms` (ITL at batch 1) for the same
model, GPU, TP and precision. The engines and versions differ from the factors the model uses
(perf/roofline.py BACKENDS), so this shows the model's order of accuracy, not a calibration.
"""

from __future__ import annotations

import statistics

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.models import CATALOGUE
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms

# (source, model, gpu, tp, precision, engine, metric, input tokens, context, published ms)
PUBLISHED = [
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "h100_sxm", 4, "fp8", "trtllm", "ttft", 128, 0, 19.6),
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "h100_sxm", 8, "fp8", "trtllm", "ttft", 2048, 0, 85.1),
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "h200_sxm", 4, "fp8", "trtllm", "ttft", 128, 0, 17.8),
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "h200_sxm", 4, "fp8", "trtllm", "ttft", 2048, 0,
     103.0),
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "a100_80gb", 4, "bf16", "trtllm", "ttft", 128, 0, 45.6),
    ("[1] TRT-LLM 0.9.0", "Llama-2-70B", "a100_80gb", 8, "bf16", "trtllm", "ttft", 2048, 0,
     249.2),
    ("[2] NIM 1.8.0", "Llama-3.1-70B", "h100_sxm", 2, "fp8", "trtllm", "ttft", 5000, 0, 406.77),
    ("[2] NIM 1.8.0", "Llama-3.1-70B", "h100_sxm", 2, "fp8", "trtllm", "itl", 5000, 5250, 18.58),
    ("[2] NIM 1.8.0", "Llama-3.1-70B", "h100_sxm", 2, "fp8", "trtllm", "ttft", 500, 0, 47.77),
    ("[2] NIM 1.8.0", "Llama-3.1-70B", "h100_sxm", 2, "fp8", "trtllm", "itl", 500, 1500, 18.91),
    ("[3] lmdeploy 0.1.0a1", "Llama-2-70B", "a100_80gb", 4, "bf16", "trtllm", "itl", 128, 192,
     29.0),
    ("[4] vLLM 0.6.3", "Qwen2.5-7B", "a100_80gb", 1, "bf16", "vllm", "itl", 1, 1024, 1000 / 84.28),
]


def main() -> None:
    print(f"{'source':<21} {'model':<14} {'gpu':<10} {'tp':>2} {'prec':<5} {'metric':<5} "
          f"{'tokens':>6} {'published ms':>12} {'ours ms':>8} {'error':>7}")
    errors = []
    for src, model, gpu, tp, prec, engine, metric, isl, ctx, ms in PUBLISHED:
        arch = ModelArch.from_config(CATALOGUE[model].config, model)
        hw = Hardware(GPUS[gpu], tp=tp, precision=prec, backend=engine)  # type: ignore[arg-type]
        ours = prefill_ms(arch, hw, isl) if metric == "ttft" else decode_step_ms(arch, hw, 1, ctx)
        err = ours / ms - 1
        errors.append(abs(err))
        print(f"{src:<21} {model:<14} {gpu:<10} {tp:>2} {prec:<5} {metric:<5} {isl:>6} "
              f"{ms:>12.1f} {ours:>8.1f} {err * 100:>+6.0f}%")
    print(f"\n{len(PUBLISHED)} points; median |error| {statistics.median(errors) * 100:.0f}%")


if __name__ == "__main__":
    main()
