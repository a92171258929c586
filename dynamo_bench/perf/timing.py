"""A deployment's timing tables: one per worker group, from the provider chain.

This is where a `DeploymentSpec` meets the performance model. `backend: mocker` deployments run
on these tables (`--planner-profile-data`, `--num-gpu-blocks-override`), and the offline replay
of any deployment does too. A spec's `timing` picks the providers (perf/providers.py): `auto`
(default: measured tables, else AIConfigurator's database where it covers the worker, else the
calibrated roofline), `roofline`, `aiconfigurator`, `mocker-default` (the mocker's built-in
curve, the same for every model and TP) or a path to an NPZ of measured tables.

The tables time the engine the spec names: a vLLM, SGLang or TensorRT-LLM spec is timed as that
engine (its constants and AIConfigurator's database for it), a mocker spec as vLLM.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from dynamo_bench.errors import UserError
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import Fit, memory_fit
from dynamo_bench.perf.providers import WorkerQuery, default_chain, tables_from_chain
from dynamo_bench.perf.roofline import Hardware
from dynamo_bench.perf.tables import TableLookup, TimingTables
from dynamo_bench.specs.deployment import DeploymentSpec, Role, WorkerGroup

DEFAULT_BLOCK_SIZE = 64
#: The mocker's own scheduler defaults, stated explicitly so that live launches and the replay
#: schedule identically whatever either side's defaults are.
ENGINE_DEFAULTS = {"max_num_seqs": 256, "max_num_batched_tokens": 8192,
                   "enable_chunked_prefill": True}
#: The longest context a table covers unless the KV capacity is smaller.
MAX_CONTEXT = 131072


def kv_transfer(spec: DeploymentSpec, arch: ModelArch) -> tuple[float, int]:
    """(bandwidth GB/s, bytes per token) of prefill -> decode KV transfers.

    Prefill and decode workers are assumed to share a node: half the GPU's interconnect
    bandwidth (NVLink; the mocker's documentation suggests ~450 GB/s on H100 nodes).
    """
    gpu = GPUS[spec.gpu]
    return gpu.interconnect_gb_s / 2, arch.kv_bytes_per_token(1 if spec.precision == "fp8"
                                                              else 2)


class DoesNotFitError(UserError):
    """A worker group's model does not fit in its GPUs' memory. `fit` has the numbers."""

    def __init__(self, field: str, fit: Fit) -> None:
        self.field = field
        self.fit = fit
        super().__init__(f"{field}: {fit.reason} (raise tp/pp, use fp8, or a larger GPU)")


def hardware(spec: DeploymentSpec, group: WorkerGroup) -> Hardware:
    return Hardware(GPUS[spec.gpu], tp=group.tp, pp=group.pp, precision=spec.precision,
                    backend=spec.backend)


def group_fit(spec: DeploymentSpec, role: Role, arch: ModelArch) -> Fit:
    """The memory fit of one worker group."""
    g = spec.workers[role]
    return memory_fit(arch, hardware(spec, g), block_size=g.block_size or DEFAULT_BLOCK_SIZE,
                      gpu_memory_utilization=g.gpu_memory_utilization or 0.9,
                      max_num_batched_tokens=g.max_num_batched_tokens
                      or ENGINE_DEFAULTS["max_num_batched_tokens"])


def worker_query(spec: DeploymentSpec, role: Role, arch: ModelArch, fit: Fit) -> WorkerQuery:
    g = spec.workers[role]
    return WorkerQuery(spec.model, arch, hardware(spec, g), kv_tokens=fit.kv_tokens,
                       max_context=min(MAX_CONTEXT, max(fit.kv_tokens, 1024)))


def tables_for(spec: DeploymentSpec, model_dir: str | Path | None = None
               ) -> dict[Role, TimingTables]:
    """Timing tables per worker group (empty for `timing: mocker-default`).

    The architecture is read from the catalogue or `spec.model`'s config.json (`model_dir`, if
    given, is read instead). Raises `DoesNotFitError` when a group does not fit in memory, and
    `UserError` when a given table file is missing or nothing covers a worker.
    """
    if spec.timing == "mocker-default":
        return {}
    path = Path(spec.timing).expanduser() if spec.timing.endswith(".npz") else None
    if path is not None and not path.is_file():
        raise UserError(f"timing: {path} not found (give an NPZ of timing tables, 'auto', "
                        "'roofline', 'aiconfigurator' or 'mocker-default')")
    arch = ModelArch.from_dir(model_dir) if model_dir is not None else ModelArch.of(spec.model)
    bandwidth, per_token = kv_transfer(spec, arch)
    chain = default_chain(spec.timing)
    out: dict[Role, TimingTables] = {}
    for role in spec.roles():
        g = spec.workers[role]
        fit = group_fit(spec, role, arch)
        block = g.block_size or DEFAULT_BLOCK_SIZE
        blocks = fit.num_gpu_blocks
        if path is not None:
            # measured tables carry the real engine's KV capacity
            meta = path.with_suffix(".json")
            measured = json.loads(meta.read_text()).get("num_gpu_blocks") if meta.is_file() \
                else None
            blocks = int(measured) if measured else blocks
        elif not fit.fits:
            raise DoesNotFitError(f"workers.{role}", fit)
        tables = tables_from_chain(worker_query(spec, role, arch, fit), chain,
                                   num_gpu_blocks=blocks, block_size=block)
        out[role] = replace(tables, kv_transfer_gb_s=bandwidth, kv_bytes_per_token=per_token)
    return out


def _lookups(spec: DeploymentSpec) -> tuple[Role, TableLookup, Role, TableLookup] | None:
    """(prefill role, its tables, decode role, its tables) of a deployment, read the way the
    mocker reads them; None without tables (mocker-default) or when a group does not fit."""
    try:
        tables = tables_for(spec)
    except UserError:
        return None
    if not tables:
        return None
    prefill: Role = "prefill" if "prefill" in tables else "agg"
    decode: Role = "decode" if "decode" in tables else "agg"
    return prefill, tables[prefill].lookup(), decode, tables[decode].lookup()


def request_seconds(spec: DeploymentSpec, isl: float, osl: float, concurrency: int
                    ) -> float | None:
    """One request's predicted duration at `concurrency` (simulated seconds): its prefill plus
    `osl` decode steps of a batch of concurrency / replicas, read from the deployment's timing
    tables. None for `timing: mocker-default` (no tables) or a deployment that does not fit."""
    found = _lookups(spec)
    if found is None:
        return None
    _, pre, decode_role, dec = found
    batch = max(1.0, concurrency / spec.workers[decode_role].replicas)
    return (pre.prefill_ms(isl) + osl * dec.decode_ms(batch, isl + osl / 2)) / 1000.0


def boundary_estimate(spec: DeploymentSpec, isl: float, osl: float, *, ttft_ms: float,
                      itl_ms: float, limit: int) -> int | None:
    """The performance model's guess of the highest concurrency (<= `limit`) at which mean TTFT
    and ITL stay within `ttft_ms` and `itl_ms`, in closed form from the timing tables: each
    decode step of a batch also carries the prefill of the requests that replace finished ones,
    and prefills queue at their workers like an M/D/1 queue. A first guess for the load search,
    not a result; None when the deployment has no tables or does not fit."""
    found = _lookups(spec)
    if found is None:
        return None
    prefill_role, pre, decode_role, dec = found
    first = pre.prefill_ms(isl)
    ctx = isl + osl / 2
    best = 0
    for c in range(1, limit + 1):
        batch = c / spec.workers[decode_role].replicas
        step = dec.decode_ms(batch, ctx)
        if decode_role == "agg":
            step += first * batch / max(osl, 1)
        e2e = first + osl * step
        load = (c / spec.workers[prefill_role].replicas) * first / e2e
        ttft = first * (1 + load / (2 * (1 - load))) if load < 1 else float("inf")
        if step > itl_ms or ttft > ttft_ms:
            break
        best = c
    return best
