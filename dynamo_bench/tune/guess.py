"""Start points: the performance model's best guesses, enqueued before the sampler takes over.

A closed-form estimate per GPU layout (no simulation): for a batch of `b` running requests, a
decode step takes `decode_step_ms(b, context)`; in an aggregated worker every step also carries
`b / osl` prefills' worth of prompt tokens. The largest batch whose step time meets the ITL limit,
whose prefill meets the TTFT limit and whose KV cache fits gives the tokens/s per GPU. Disagg
pairs balance prefill request rate against decode request rate. Coarse, but it ranks layouts
well enough to start the search near the good ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import memory_fit
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.space import (
    Layout,
    _role_values,
    agg_layouts,
    disagg_label,
    disagg_layouts,
)
from dynamo_bench.tune.sweep import Range, SweepSpec


@dataclass(frozen=True)
class Guess:
    params: dict[str, Any]
    tok_s_per_gpu: float
    batch: int
    mode: str = "agg"


def _limits(sla: SLA) -> tuple[float, float]:
    ttft = min((c.threshold for c in sla.constraints if c.metric == "ttft_ms" and c.op == "<="),
               default=float("inf"))
    itl = min((c.threshold for c in sla.constraints if c.metric == "itl_ms" and c.op == "<="),
              default=float("inf"))
    return ttft, itl


def _max_seqs(sweep: SweepSpec, role: str) -> int:
    v = _role_values(sweep, role, "max_num_seqs")  # type: ignore[arg-type]
    if v is None:
        return 256
    return int(v.high) if isinstance(v, Range) else int(max(v))


class _Model:
    def __init__(self, sweep: SweepSpec, arch: ModelArch) -> None:
        d = sweep.deployment
        self.sweep, self.arch = sweep, arch
        self.gpu = GPUS[d.get("gpu", "h100_sxm")]
        self.precision = d.get("precision", "bf16")
        backend = d.get("backend", "mocker")
        self.backend = "vllm" if backend == "mocker" else backend
        w = sweep.workload
        self.isl = (w.isl.mean if w.isl else 1024) + (w.prefix.length if w.prefix else 0)
        self.osl = w.osl.mean if w.osl else 128

    def hw(self, lay: Layout) -> Hardware:
        return Hardware(self.gpu, tp=lay.tp, pp=lay.pp, precision=self.precision,
                        backend=self.backend)

    def kv_tokens(self, lay: Layout) -> int:
        fit = memory_fit(self.arch, self.hw(lay))
        return fit.kv_tokens if fit.fits else 0

    def best_batch(self, lay: Layout, role: str, ttft: float, itl: float,
                   prefill_share: bool) -> tuple[int, float]:
        """(batch, step ms) of the largest batch meeting the limits; (0, inf) if none."""
        hw = self.hw(lay)
        cap = self.kv_tokens(lay)
        first = prefill_ms(self.arch, hw, int(self.isl))
        if cap <= 0 or first > ttft:
            return 0, float("inf")
        ctx = self.isl + self.osl / 2
        best = (0, float("inf"))
        b = 1
        while b <= _max_seqs(self.sweep, role) and b * ctx <= cap:
            step = decode_step_ms(self.arch, hw, b, ctx)
            if prefill_share:
                step += first * b / self.osl
            if step > itl:
                break
            best = (b, step)
            b *= 2
        return best


def start_points(sweep: SweepSpec, sla: SLA, arch: ModelArch, n: int | None) -> list[Guess]:
    """The `n` (None: all) layouts the closed-form model ranks best for `sla` (only layouts it
    thinks meet the SLA), best first, as partial Optuna params (the sampler fills in the
    rest, but each role's max_num_seqs is the largest of the space)."""
    if n is not None and n <= 0:
        return []
    m = _Model(sweep, arch)
    ttft, itl = _limits(sla)
    guesses: list[Guess] = []
    if "agg" in sweep.space.mode:
        for lay in agg_layouts(sweep):
            b, step = m.best_batch(lay, "agg", ttft, itl, prefill_share=True)
            if b:
                tps = b * 1000.0 / step / (lay.tp * lay.pp)
                guesses.append(Guess(_params(sweep, "agg", lay.label), tps, b, "agg"))
    if "disagg" in sweep.space.mode:
        for p, d in disagg_layouts(sweep):
            b, step = m.best_batch(d, "decode", ttft, itl, prefill_share=False)
            first = prefill_ms(arch, m.hw(p), int(m.isl))
            if not b or first > ttft or m.kv_tokens(p) <= 0:
                continue
            decode_rps = d.replicas * b * 1000.0 / step / m.osl
            prefill_rps = p.replicas * 1000.0 / first
            tps = min(decode_rps, prefill_rps) * m.osl / (p.gpus + d.gpus)
            guesses.append(Guess(_params(sweep, "disagg", disagg_label(p, d)), tps, b,
                                 "disagg"))
    guesses.sort(key=lambda g: -g.tok_s_per_gpu)
    return guesses if n is None else guesses[:n]


def _params(sweep: SweepSpec, mode: str, layout: str) -> dict[str, Any]:
    params: dict[str, Any] = {f"{mode}.layout": layout}
    if len(sweep.space.mode) > 1:
        params["mode"] = mode
    # the largest max_num_seqs: the load search, not the engine's cap, sets the batch. A cap
    # at the guessed batch held the load below the SLA boundary whenever the coarse guess fell
    # short (on the search benchmark's ground truths a larger cap never scored lower).
    for role in (("agg",) if mode == "agg" else ("prefill", "decode")):
        seqs = _role_values(sweep, role, "max_num_seqs")  # type: ignore[arg-type]
        if isinstance(seqs, Range):
            params[f"{role}.max_num_seqs"] = int(seqs.high)
        elif seqs is not None and len(seqs) > 1:
            params[f"{role}.max_num_seqs"] = max(seqs)
    return params
