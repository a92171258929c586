"""A roofline performance model of LLM inference: prefill time and decode step time.

For one worker (a TP x PP group of GPUs) of a given GPU type, backend and precision:

    t(step) = max(FLOPs / (tp x F x e_c), bytes / (tp x B x e_m)) + t_comm + t_step

where F and B are the GPU's dense tensor FLOP/s and memory bandwidth (perf/gpus.py), e_c and e_m
the backend's achieved fractions of them, t_step its fixed per-step scheduling/launch cost, and
t_comm the tensor-parallel all-reduces and pipeline hand-offs:

- FLOPs of a forward pass over T tokens: 2 x T x N_active (every weight multiply-accumulates once
  per token; Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1) plus the
  attention score and value products, 4 x L x H x d per (query token, context token) pair; a
  causal prefill of T new tokens after P cached ones has T x P + T^2 / 2 such pairs.
- bytes: the weights read once per step (for an MoE only the experts the step's tokens touch:
  E x (1 - (1 - k/E)^(tokens))) plus the KV cache read for attention (tokens x context x KV
  bytes per token). Decode is memory-bound (Pope et al. 2022, "Efficiently Scaling Transformer
  Inference", sec. 3), prefill compute-bound.
- TP: two all-reduces per layer (after attention and after the MLP; Shoeybi et al. 2019,
  "Megatron-LM", sec. 3) of T x hidden activations, ring algorithm: 2 (tp - 1) / tp x size /
  link bandwidth + a fixed latency per collective. The latency term is what gives more TP its
  diminishing returns for small decode batches.
- PP: a token passes every stage in turn, so PP does not shorten one request's latency; each
  hand-off costs T x hidden activations over the link plus a latency. In decode the batch is
  split into pp micro-batches that keep the stages busy: ITL(B) = t(B / pp) + (pp - 1) hand-offs.
- KV heads are split across TP ranks; beyond tp = kv_heads they are replicated.

Backend factors are first-order calibrations, not measurements of any one release: vLLM,
SGLang and TensorRT-LLM reach roughly 50-65% of dense peak in large prefills and 75-85% of
memory bandwidth in decode GEMVs, with a few hundred microseconds of per-step host overhead
(CUDA graphs on). Measured tables (`dynamo-bench profile`) override the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPU

Precision = Literal["bf16", "fp8"]
PRECISION_BYTES: dict[str, int] = {"bf16": 2, "fp8": 1}


@dataclass(frozen=True)
class BackendEfficiency:
    """Achieved fractions of peak and fixed costs for one serving engine."""

    compute: float
    memory: float
    step_overhead_ms: float
    allreduce_latency_us: float = 12.0


BACKENDS: dict[str, BackendEfficiency] = {
    "vllm": BackendEfficiency(compute=0.55, memory=0.80, step_overhead_ms=0.60),
    "sglang": BackendEfficiency(compute=0.57, memory=0.82, step_overhead_ms=0.50),
    "trtllm": BackendEfficiency(compute=0.62, memory=0.85, step_overhead_ms=0.40),
}
#: The mocker simulates a vLLM-like engine by default.
BACKENDS["mocker"] = BACKENDS["vllm"]


@dataclass(frozen=True)
class Hardware:
    """One worker's hardware: GPU type, parallelism, precision, backend."""

    gpu: GPU
    tp: int = 1
    pp: int = 1
    precision: Precision = "bf16"
    backend: str = "vllm"

    @property
    def eff(self) -> BackendEfficiency:
        return BACKENDS[self.backend]

    @property
    def flops(self) -> float:
        """Dense FLOP/s of one GPU at this precision (bf16 where the part has no fp8)."""
        tflops = self.gpu.fp8_tflops if self.precision == "fp8" and self.gpu.fp8_tflops \
            else self.gpu.bf16_tflops
        return tflops * 1e12

    @property
    def bandwidth(self) -> float:
        return self.gpu.bandwidth_tb_s * 1e12

    @property
    def link(self) -> float:
        return self.gpu.interconnect_gb_s * 1e9

    @property
    def weight_bytes(self) -> int:
        return PRECISION_BYTES[self.precision]


def _allreduce_s(hw: Hardware, nbytes: float) -> float:
    if hw.tp == 1:
        return 0.0
    alpha = hw.eff.allreduce_latency_us * 1e-6 * (2.5 if hw.gpu.interconnect.startswith("PCIe")
                                                   else 1.0)
    return alpha + 2 * (hw.tp - 1) / hw.tp * nbytes / (0.7 * hw.link)


def _handoff_s(hw: Hardware, nbytes: float) -> float:
    return 20e-6 + nbytes / (0.7 * hw.link)


def _experts_touched(arch: ModelArch, tokens: float) -> float:
    if not arch.is_moe:
        return 0.0
    k, e = arch.experts_per_token, arch.experts
    return e * (1 - (1 - k / e) ** max(tokens, 1.0))


def _weight_bytes_read(arch: ModelArch, hw: Hardware, tokens: float) -> float:
    """Weights one forward pass over `tokens` tokens reads (all GPUs of the worker)."""
    per_layer = arch.attn_params_per_layer
    if arch.is_moe:
        per_layer += _experts_touched(arch, tokens) * 3 * arch.hidden * arch.moe_intermediate
    else:
        per_layer += arch.ffn_params_per_layer
    return (arch.layers * per_layer + arch.vocab * arch.hidden) * hw.weight_bytes


def _kv_split(arch: ModelArch, hw: Hardware) -> float:
    """How many ways the KV cache is split across the TP ranks."""
    return float(min(hw.tp, arch.kv_heads))


def _step_s(arch: ModelArch, hw: Hardware, flops: float, weight_bytes: float,
            kv_bytes: float, tokens: float) -> float:
    compute = flops / (hw.tp * hw.flops * hw.eff.compute)
    memory = (weight_bytes / hw.tp + kv_bytes / _kv_split(arch, hw)) / (hw.bandwidth
                                                                         * hw.eff.memory)
    act = tokens * arch.hidden * 2  # bf16 activations
    comm = 2 * arch.layers * _allreduce_s(hw, act)
    return max(compute, memory) + comm + hw.eff.step_overhead_ms * 1e-3


def prefill_ms(arch: ModelArch, hw: Hardware, tokens: int, prefix: int = 0) -> float:
    """Time to prefill `tokens` new tokens of one sequence after `prefix` cached ones (ms)."""
    t = float(tokens)
    attn_pairs = t * prefix + t * t / 2
    nonembed = arch.active_params - arch.embedding_params
    flops = 2 * t * nonembed + 4 * arch.layers * arch.heads * arch.head_dim * attn_pairs \
        + 2 * arch.hidden * arch.vocab
    kv = (prefix + t) * arch.kv_bytes_per_token(hw.weight_bytes)
    step = _step_s(arch, hw, flops, _weight_bytes_read(arch, hw, t), kv, t)
    handoffs = (hw.pp - 1) * _handoff_s(hw, t * arch.hidden * 2)
    return 1000 * (step + handoffs)


def decode_step_ms(arch: ModelArch, hw: Hardware, batch: float, context: float) -> float:
    """Inter-token latency of a decode step: `batch` sequences of mean length `context` (ms)."""
    micro = max(batch / hw.pp, 1.0)
    nonembed = arch.active_params - arch.embedding_params
    flops = micro * (2 * nonembed + 4 * arch.layers * arch.heads * arch.head_dim * context
                     + 2 * arch.hidden * arch.vocab)
    kv = micro * context * arch.kv_bytes_per_token(hw.weight_bytes)
    step = _step_s(arch, hw, flops, _weight_bytes_read(arch, hw, micro), kv, micro)
    handoffs = (hw.pp - 1) * _handoff_s(hw, micro * arch.hidden * 2)
    return 1000 * (step + handoffs)
