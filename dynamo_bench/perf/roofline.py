"""A calibrated roofline model of LLM inference: prefill time and decode step time.

For one worker (a TP x PP group of GPUs) of a given GPU type, engine and precision:

    t(step) = max(GEMM FLOPs / (tp F e_c) + attention FLOPs / (tp F e_a),
                  weight bytes / (tp B e_m) + KV bytes / (kv_split B e_a))
              + t_comm + layers x t_layer + t_step

where F and B are the GPU's dense tensor FLOP/s and memory bandwidth (perf/gpus.py), e_c and e_m
the engine's achieved fractions of them in GEMMs and weight streaming, e_a in attention, t_layer a fixed cost per layer (the small kernels a
roofline does not count: norms, rotary, activation, launch gaps), t_step a fixed cost per
engine step (scheduling, sampling, host work) and t_comm the tensor-parallel all-reduces and
pipeline hand-offs. A request's first token also pays a fixed `request_ms`.

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

The constants e_c, e_m, e_a, t_layer, t_step, request_ms, the all-reduce latency and the fraction
of the link an all-reduce reaches are fitted per GPU
generation, precision and engine (perf/calibration.py, written by perf/calibrate.py) against
AIConfigurator's database of measured kernel timings and published measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.calibration import Calibration, Efficiency, calibration
from dynamo_bench.perf.gpus import GPU

Precision = Literal["bf16", "fp8"]
PRECISION_BYTES: dict[str, int] = {"bf16": 2, "fp8": 1}
#: Engines the model has constants for (the mocker simulates vLLM).
BACKENDS = ("vllm", "sglang", "trtllm", "mocker")


@dataclass(frozen=True)
class Hardware:
    """One worker's hardware: GPU type, parallelism, precision, engine, and the constants."""

    gpu: GPU
    tp: int = 1
    pp: int = 1
    precision: Precision = "bf16"
    backend: str = "vllm"
    constants: Calibration | None = field(default=None, compare=False, repr=False)

    @property
    def engine(self) -> str:
        return "vllm" if self.backend == "mocker" else self.backend

    @property
    def calibration_key(self) -> str:
        return self._lookup()[0]

    @property
    def eff(self) -> Efficiency:
        return self._lookup()[1]

    def _lookup(self) -> tuple[str, Efficiency]:
        cal = self.constants or calibration()
        return cal.lookup(self.gpu.generation, self.precision, self.engine)

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


def _allreduce_s(hw: Hardware, eff: Efficiency, nbytes: float) -> float:
    if hw.tp == 1:
        return 0.0
    return eff.allreduce_us * 1e-6 + 2 * (hw.tp - 1) / hw.tp * nbytes / (eff.link * hw.link)


def _handoff_s(hw: Hardware, nbytes: float) -> float:
    return 20e-6 + nbytes / (0.7 * hw.link)


def _experts_touched(arch: ModelArch, tokens: float) -> float:
    if not arch.is_moe:
        return 0.0
    k, e = arch.experts_per_token, arch.experts
    return e * (1 - (1 - k / e) ** max(tokens, 1.0))


def _weight_bytes_read(arch: ModelArch, hw: Hardware, tokens: float) -> tuple[float, float]:
    """(dense, expert) weight bytes one forward pass over `tokens` tokens reads (all GPUs)."""
    dense = arch.layers * (arch.attn_params_per_layer
                           + (0 if arch.is_moe else arch.ffn_params_per_layer)) \
        + arch.vocab * arch.hidden
    experts = arch.layers * _experts_touched(arch, tokens) * 3 * arch.hidden \
        * arch.moe_intermediate if arch.is_moe else 0.0
    return dense * hw.weight_bytes, experts * hw.weight_bytes


def _expert_flops_per_token(arch: ModelArch) -> float:
    if not arch.is_moe:
        return 0.0
    return 2 * arch.layers * arch.experts_per_token * 3 * arch.hidden * arch.moe_intermediate


def _kv_split(arch: ModelArch, hw: Hardware) -> float:
    """How many ways the KV cache is split across the TP ranks."""
    return float(min(hw.tp, arch.kv_heads))


def _step_s(arch: ModelArch, hw: Hardware, eff: Efficiency, gemm_flops: float,
            expert_flops: float, attn_flops: float, weights: tuple[float, float],
            kv_bytes: float, tokens: float, layer_us: float) -> float:
    compute = ((gemm_flops - expert_flops) / eff.compute
               + expert_flops / (eff.compute * eff.moe)
               + attn_flops / eff.attention) / (hw.tp * hw.flops)
    dense_bytes, expert_bytes = weights
    memory = ((dense_bytes + expert_bytes / eff.moe) / (hw.tp * eff.memory)
              + kv_bytes / (_kv_split(arch, hw) * eff.attention)) / hw.bandwidth
    act = tokens * arch.hidden * 2  # bf16 activations
    comm = 2 * arch.layers * _allreduce_s(hw, eff, act)
    # a token passes every layer of every pipeline stage in turn
    fixed = arch.layers * layer_us * 1e-6 + eff.step_ms * 1e-3
    return max(compute, memory) + comm + fixed


def prefill_ms(arch: ModelArch, hw: Hardware, tokens: int, prefix: int = 0) -> float:
    """Time to the first token of one request: prefill `tokens` new tokens after `prefix`
    cached ones, plus the request's fixed cost (ms)."""
    eff = hw.eff
    t = float(tokens)
    attn_pairs = t * prefix + t * t / 2
    nonembed = arch.active_params - arch.embedding_params
    gemm = 2 * t * nonembed + 2 * arch.hidden * arch.vocab
    attn = 4 * arch.layers * arch.heads * arch.head_dim * attn_pairs
    kv = (prefix + t) * arch.kv_bytes_per_token(hw.weight_bytes)
    step = _step_s(arch, hw, eff, gemm, t * _expert_flops_per_token(arch), attn,
                   _weight_bytes_read(arch, hw, t), kv, t, eff.prefill_layer_us)
    handoffs = (hw.pp - 1) * _handoff_s(hw, t * arch.hidden * 2)
    return 1000 * (step + handoffs) + eff.request_ms


def decode_step_ms(arch: ModelArch, hw: Hardware, batch: float, context: float) -> float:
    """Inter-token latency of a decode step: `batch` sequences of mean length `context` (ms)."""
    eff = hw.eff
    micro = max(batch / hw.pp, 1.0)
    nonembed = arch.active_params - arch.embedding_params
    gemm = micro * (2 * nonembed + 2 * arch.hidden * arch.vocab)
    attn = micro * 4 * arch.layers * arch.heads * arch.head_dim * context
    kv = micro * context * arch.kv_bytes_per_token(hw.weight_bytes)
    step = _step_s(arch, hw, eff, gemm, micro * _expert_flops_per_token(arch), attn,
                   _weight_bytes_read(arch, hw, micro), kv, micro, eff.decode_layer_us)
    handoffs = (hw.pp - 1) * _handoff_s(hw, micro * arch.hidden * 2)
    return 1000 * (step + handoffs)
