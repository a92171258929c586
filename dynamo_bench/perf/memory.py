"""Does a model fit on a worker, and how much KV cache is left?

Per GPU of a TP x PP worker, with `memory` as the driver reports it (perf/gpus.py), u the
spec's `gpu_memory_utilization` (default 0.9) and

    weights   = parameters x bytes / (tp x pp)          (embeddings split like the rest)
    reserve   = runtime (CUDA context, graphs, NCCL buffers) + activations of the largest step

each engine sizes its KV cache its own way:

    vLLM (and the mocker)   KV = memory x u - weights - reserve     (u of all memory, for all)
    SGLang                  KV = memory x u - weights               (mem_fraction_static: u
                                                                     holds weights + KV pool)
    TensorRT-LLM            KV = (memory - weights - reserve) x u   (free_gpu_memory_fraction:
                                                                     u of what is left)
    blocks    = KV / (block_size x KV bytes per token per GPU)

KV bytes per token per GPU: 2 (K and V) x layers / pp x kv_heads / min(tp, kv_heads) x head_dim
x bytes. A configuration that leaves no room for one full context of KV does not fit.
Sizes are reported in GiB (2^30 bytes), the unit the driver and the engines' logs use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.roofline import PRECISION_BYTES, Hardware

GIB = 2**30
RUNTIME_RESERVE_GIB = 2.0


@dataclass(frozen=True)
class Fit:
    """The verdict and the numbers behind it (GiB = 2^30 bytes, per GPU)."""

    fits: bool
    usable_gib: float
    weights_gib: float
    reserve_gib: float
    kv_gib: float
    kv_bytes_per_token: float
    num_gpu_blocks: int
    kv_tokens: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def memory_fit(arch: ModelArch, hw: Hardware, *, block_size: int = 64,
               gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int = 8192,
               min_context: int = 4096) -> Fit:
    """Fit verdict and KV capacity of `arch` on one worker of `hw`."""
    bytes_w = PRECISION_BYTES[hw.precision]
    total = hw.gpu.memory_bytes
    weights = arch.params * bytes_w / (hw.tp * hw.pp)
    # activations of the largest prefill step: a few hidden-sized buffers plus the MLP's
    # intermediate, for every batched token (bf16)
    inter = (arch.moe_intermediate * arch.experts_per_token if arch.is_moe
             else arch.intermediate) / hw.tp
    activations = max_num_batched_tokens * (6 * arch.hidden + 2 * inter) * 2
    reserve = RUNTIME_RESERVE_GIB * GIB + activations
    u = gpu_memory_utilization
    if hw.engine == "trtllm":
        usable = total - reserve
        kv = (total - weights - reserve) * u
    elif hw.engine == "sglang":
        usable = total * u
        kv = usable - weights
    else:
        usable = total * u
        kv = usable - weights - reserve
    per_token = 2 * (arch.layers / hw.pp) * (arch.kv_heads / min(hw.tp, arch.kv_heads)) \
        * arch.head_dim * bytes_w
    blocks = max(0, math.floor(kv / (block_size * per_token))) if kv > 0 else 0
    tokens = blocks * block_size
    where = (f"{arch.name} ({arch.params / 1e9:.1f}B params, {hw.precision}) on "
             f"{hw.tp * hw.pp} x {hw.gpu.name} (tp {hw.tp}, pp {hw.pp}, {hw.engine})")
    numbers = (f"per GPU: {usable / GIB:.1f} GiB usable, weights {weights / GIB:.1f} GiB, "
               f"reserve {reserve / GIB:.1f} GiB, KV {max(kv, 0) / GIB:.1f} GiB")
    if weights > usable:
        reason = f"does not fit: {where}: weights alone exceed the usable memory ({numbers})"
        fits = False
    elif tokens < min_context:
        reason = (f"does not fit: {where}: KV room for {tokens} tokens, less than one "
                  f"{min_context}-token context ({numbers})")
        fits = False
    else:
        reason = f"fits: {where}: {blocks} blocks of {block_size} = {tokens} KV tokens " \
                 f"({numbers})"
        fits = True
    return Fit(fits, usable / GIB, weights / GIB, reserve / GIB, max(kv, 0) / GIB, per_token,
               blocks, tokens, reason)
