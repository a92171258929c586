"""A deployment's timing tables: one per worker group, from its model, GPU, TP, PP, precision.

This is where a `DeploymentSpec` meets the performance model. `backend: mocker` deployments run
on these tables (`--planner-profile-data`, `--num-gpu-blocks-override`): the roofline model's by
default, AIConfigurator's with `timing: aiconfigurator` (needs `--extra aic`), the mocker's
built-in curve with `timing: mocker-default` (the same for every model and TP), or a measured
NPZ file given as `timing: path.npz`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from dynamo_bench.errors import UserError
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import Fit
from dynamo_bench.perf.roofline import Hardware
from dynamo_bench.perf.tables import TimingTables, save_tables, timing_tables
from dynamo_bench.specs.deployment import DeploymentSpec, Role, WorkerGroup

DEFAULT_BLOCK_SIZE = 64
#: The mocker's own scheduler defaults, stated explicitly so that live launches and the replay
#: schedule identically whatever either side's defaults are.
ENGINE_DEFAULTS = {"max_num_seqs": 256, "max_num_batched_tokens": 8192,
                   "enable_chunked_prefill": True}


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


def group_fit(spec: DeploymentSpec, role: Role, arch: ModelArch) -> tuple[TimingTables | None,
                                                                           Fit]:
    g = spec.workers[role]
    return timing_tables(arch, hardware(spec, g), block_size=g.block_size or DEFAULT_BLOCK_SIZE,
                         gpu_memory_utilization=g.gpu_memory_utilization or 0.9,
                         max_num_batched_tokens=g.max_num_batched_tokens or 8192)


def tables_for(spec: DeploymentSpec, model_dir: str | Path) -> dict[Role, TimingTables]:
    """Timing tables per worker group for a mocker deployment (empty for mocker-default).

    Raises:
        DoesNotFitError: a group's model does not fit on its GPUs.
    """
    if spec.timing == "mocker-default":
        return {}
    if spec.timing not in ("roofline", "aiconfigurator"):
        path = Path(spec.timing).expanduser()
        if not path.is_file():
            raise UserError(f"timing: {path} not found (give an NPZ of timing tables, "
                            "'roofline' or 'mocker-default')")
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        blocks = int(meta.get("num_gpu_blocks", 0))
        return {role: TimingTables(path, blocks, g.block_size or DEFAULT_BLOCK_SIZE, meta)
                for role, g in spec.workers.items()}
    arch = ModelArch.from_dir(model_dir)
    bandwidth, per_token = kv_transfer(spec, arch)
    out: dict[Role, TimingTables] = {}
    for role in spec.roles():
        tables, fit = group_fit(spec, role, arch)
        if tables is None:
            raise DoesNotFitError(f"workers.{role}", fit)
        if spec.timing == "aiconfigurator":
            tables = _aic_group_tables(spec, role, tables)
        out[role] = replace(tables, kv_transfer_gb_s=bandwidth, kv_bytes_per_token=per_token)
    return out


def _aic_group_tables(spec: DeploymentSpec, role: Role, roofline: TimingTables) -> TimingTables:
    """AIConfigurator's tables for a group, on the roofline tables' grid limits and KV capacity
    (AIConfigurator predicts latencies, the memory fit stays ours). Cached beside them."""
    from dynamo_bench.perf.aic import aic_tables

    g = spec.workers[role]
    path = roofline.path.with_name(roofline.path.stem + "-aic.npz")
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return TimingTables(path, meta["num_gpu_blocks"], roofline.block_size, meta)
    kv_tokens = int(roofline.provenance.get("kv_tokens", 0))
    arrays = aic_tables(spec.model, spec.gpu, spec.backend, tp=g.tp, pp=g.pp,
                        precision=spec.precision, kv_tokens=kv_tokens,
                        max_context=int(roofline.provenance.get("max_context", 32768)))
    meta = {**roofline.provenance, "provider": "aiconfigurator",
            "aiconfigurator_version": "0.12.0"}
    save_tables(arrays, path, meta)
    return TimingTables(path, roofline.num_gpu_blocks, roofline.block_size, meta)
