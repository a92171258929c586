"""`DeploymentSpec`: what to launch. Pure data and validation, no I/O beyond reading a model config.

A deployment is a model served by one backend, either aggregated (one `agg` worker group doing
prefill and decode) or disaggregated (a `prefill` group and a `decode` group), behind one frontend
whose router picks a worker per request. `gpus` is derived from the groups, never stated.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.specs.base import Strict, field_error as _field_error

Backend = Literal["mocker", "vllm", "sglang", "trtllm"]
Mode = Literal["agg", "disagg"]
Role = Literal["agg", "prefill", "decode"]
RouterMode = Literal["kv", "round-robin", "random", "least-loaded", "power-of-two"]
KvConnector = Literal["none", "nixl", "lmcache", "kvbm", "mooncake", "ucx"]

GPU_BACKENDS: tuple[Backend, ...] = ("vllm", "sglang", "trtllm")

#: KV transfer / offload connectors each backend has (the mocker simulates transfers itself).
CONNECTORS: dict[Backend, tuple[KvConnector, ...]] = {
    "mocker": ("none",),
    "vllm": ("none", "nixl", "lmcache", "kvbm"),
    "sglang": ("none", "nixl", "mooncake"),
    "trtllm": ("none", "nixl", "ucx"),
}
#: The timing sources a spec can name besides an NPZ file (perf/providers.py).
TIMINGS = ("auto", "roofline", "aiconfigurator", "mocker-default")
#: Upper bounds that keep a typo (replicas: 100000) from becoming a manifest or a local launch.
MAX_REPLICAS = 1024
MAX_PARALLEL = 64
#: A host name or an IPv4/IPv6 address.
_HOST_RE = r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]+)$"
#: Block sizes vLLM's cache config accepts.
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128)


class KvOffload(Strict):
    """KV cache offload to host memory.

    The mocker simulates it with `host_blocks` and the offload bandwidths; vLLM gets it through
    the KVBM connector (`host_cache_gb`), SGLang through its hierarchical cache (`host_cache_gb`
    or `host_ratio`), TensorRT-LLM through its host cache (`host_cache_gb`).
    """

    host_blocks: int | None = Field(None, gt=0, description="mocker: KV blocks in host memory")
    host_cache_gb: float | None = Field(None, gt=0, description="host memory for KV, GB")
    host_ratio: float | None = Field(None, gt=0, description="sglang: host pool / device pool")
    offload_bandwidth_gb_s: float | None = Field(
        None, gt=0, description="mocker: device<->host copy bandwidth, GB/s (both directions)")


class WorkerGroup(Strict):
    """Identical workers of one role and their engine knobs (None: the engine's default)."""

    replicas: int = Field(1, ge=1, le=MAX_REPLICAS, description="number of workers in the group")
    tp: int = Field(1, ge=1, le=MAX_PARALLEL, description="tensor parallel size per worker")
    pp: int = Field(1, ge=1, le=MAX_PARALLEL, description="pipeline parallel size per worker")
    block_size: int | None = Field(None, ge=1, description="KV block (page) size, tokens")
    max_num_seqs: int | None = Field(None, ge=1, description="max sequences in a batch")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="max tokens per step")
    max_model_len: int | None = Field(None, ge=16, description="max context length, tokens")
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool | None = None
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    num_gpu_blocks: int | None = Field(None, ge=1, description="override the KV capacity, blocks")
    kv_connector: KvConnector | None = Field(
        None, description="KV transfer/offload connector; default: nixl for disagg GPU workers")
    kv_offload: KvOffload | None = None
    speedup_ratio: float = Field(1.0, gt=0, description="mocker only: simulated time speed-up")
    extra_args: list[str] = Field(default_factory=list,
                                  description="passed verbatim to the worker command")

    @property
    def gpus_per_worker(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.replicas * self.tp * self.pp

    @model_validator(mode="after")
    def _batch_limits(self) -> WorkerGroup:
        if (self.max_num_seqs and self.max_num_batched_tokens
                and self.max_num_batched_tokens < self.max_num_seqs):
            raise _field_error("max_num_batched_tokens",
                               f"{self.max_num_batched_tokens} is invalid: must be >= "
                               f"max_num_seqs ({self.max_num_seqs})")
        return self


class KvRouterSettings(Strict):
    """The KV-aware router's settings (frontend flags); None keeps Dynamo's default."""

    overlap_score_credit: float | None = Field(
        None, ge=0, description="weight of cached-prefix overlap against load")
    temperature: float | None = Field(None, ge=0, description="softmax sampling temperature")
    use_kv_events: bool | None = Field(None, description="False: predict cache state instead")
    replica_sync: bool | None = None
    track_active_blocks: bool | None = None
    assume_kv_reuse: bool | None = None
    queue_threshold: float | None = Field(None, ge=0, description="prefill queueing threshold")


class RouterSpec(Strict):
    """How the frontend picks a worker for each request."""

    mode: RouterMode = "round-robin"
    kv: KvRouterSettings | None = None

    @model_validator(mode="after")
    def _kv_only(self) -> RouterSpec:
        if self.kv is not None and self.mode != "kv":
            raise _field_error("kv", f"KV router settings need mode 'kv' (mode is "
                               f"{self.mode!r}); set mode: kv or remove router.kv")
        return self


class FrontendSpec(Strict):
    """Where the OpenAI-compatible frontend listens. Port 0 picks a free port."""

    host: str = Field("127.0.0.1",
                      description="address to bind: 127.0.0.1 (default), a host name or an IP")
    port: int = Field(0, ge=0, le=65535)

    @model_validator(mode="after")
    def _host(self) -> FrontendSpec:
        if not re.match(_HOST_RE, self.host):
            raise _field_error("host", f"{self.host!r} is invalid: give an address to bind, "
                               "e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
        return self


#: Start-up deadlines (seconds) per engine and device when a spec sets none.
STARTUP_DEADLINES_S = {"mocker": 120.0, "vllm-cpu": 900.0, "vllm-gpu": 1800.0,
                       "sglang-gpu": 1800.0, "trtllm-gpu": 1800.0}


class DeploymentSpec(Strict):
    """One Dynamo deployment: model, backend, worker groups, router, GPU type.

    `model` is a directory (any Hugging Face model directory) or a catalogue name
    (`dynamo-bench model list`); `gpu` names the GPU type the deployment runs on (or, for the
    mocker, the GPU it simulates).
    """

    name: str = Field("deployment", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                      description="lowercase letters, digits and '-' (used in k8s names)")
    model: str = Field(min_length=1)
    served_model_name: str | None = None
    backend: Backend = "mocker"
    mode: Mode = "agg"
    gpu: str = "h100_sxm"
    precision: Literal["bf16", "fp8"] = Field("bf16", description="weights and KV cache")
    timing: str = Field("auto", min_length=1, description=(
        "simulated timing (mocker and replay): 'auto' (measured tables, else AIConfigurator's "
        "database where it covers the worker, else the calibrated roofline), 'roofline', "
        "'aiconfigurator', 'mocker-default' (the mocker's built-in curve), or a path to an "
        "NPZ of measured tables"))
    workers: dict[Role, WorkerGroup]
    router: RouterSpec = RouterSpec()
    frontend: FrontendSpec = FrontendSpec()
    device: Literal["gpu", "cpu"] = Field("gpu", description=(
        "what a real engine runs on: 'gpu', or 'cpu' for vLLM's CPU build (`dynamo-bench "
        "engine install vllm --cpu`); the mocker ignores it"))
    startup_timeout_s: float | None = Field(None, gt=0, description=(
        "start-up deadline in seconds (default: the engine's, STARTUP_DEADLINES_S)"))

    # Plain properties, not serialized: a dumped spec must load back (extra fields are errors).
    @property
    def gpus(self) -> int:
        """GPUs the deployment occupies: the sum of replicas x tp x pp over its groups."""
        return sum(g.gpus for g in self.workers.values())

    @property
    def model_name(self) -> str:
        """The name clients send in requests."""
        if self.served_model_name:
            return self.served_model_name
        return self.model.rstrip("/").rsplit("/", 1)[-1]

    @property
    def startup_deadline_s(self) -> float:
        """`startup_timeout_s`, or the engine's own deadline (a CPU vLLM worker imports torch
        and vLLM in four processes: 130-290 s on a busy 2-core machine)."""
        if self.startup_timeout_s is not None:
            return self.startup_timeout_s
        if self.backend == "mocker":
            return STARTUP_DEADLINES_S["mocker"]
        return STARTUP_DEADLINES_S[f"{self.backend}-{self.device}"]

    @property
    def speedup_ratio(self) -> float:
        """The mocker's simulated-time speed-up (the same for every group; 1 for GPU engines)."""
        return next(iter(self.workers.values())).speedup_ratio if self.workers else 1.0

    def roles(self) -> list[Role]:
        """Worker roles in launch order."""
        order: list[Role] = ["agg", "prefill", "decode"]
        return [r for r in order if r in self.workers]

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        if self.timing not in TIMINGS and not self.timing.endswith(".npz"):
            raise _field_error("timing", f"{self.timing!r} is invalid: use "
                               f"{', '.join(repr(t) for t in TIMINGS)} or a path to an .npz "
                               "file")
        if self.gpu not in GPUS:
            raise _field_error("gpu", f"unknown GPU type {self.gpu!r} "
                               f"(known: {', '.join(GPUS)})")
        roles = set(self.workers)
        if self.mode == "agg" and roles != {"agg"}:
            raise _field_error("workers", f"mode agg needs exactly one group named 'agg' "
                               f"(got {', '.join(sorted(roles)) or 'none'})")
        if self.mode == "disagg":
            for role in ("prefill", "decode"):
                if role not in roles:
                    raise _field_error(f"workers.{role}",
                                       f"mode disagg needs a '{role}' worker group (add one)")
            if "agg" in roles:
                raise _field_error("workers.agg", "mode disagg takes 'prefill' and 'decode' "
                                   "groups, not 'agg' (remove it or set mode: agg)")
        if self.device == "cpu" and self.backend in ("sglang", "trtllm"):
            raise _field_error("device", f"cpu runs vLLM's CPU build; {self.backend} needs GPUs "
                               "(use backend: vllm, or device: gpu)")
        for role, group in self.workers.items():
            _check_group(self.backend, self.mode, role, group)
            if self.backend == "vllm" and self.device == "cpu" and group.block_size and \
                    group.block_size % 32:
                raise _field_error(f"workers.{role}.block_size", f"{group.block_size} is "
                                   "invalid on vLLM's CPU build: use a multiple of 32")
        _check_model(self)
        ratios = {g.speedup_ratio for g in self.workers.values()}
        if len(ratios) > 1:
            role = sorted(self.workers)[-1]
            raise _field_error(f"workers.{role}.speedup_ratio", "every worker group needs the "
                               "same speedup_ratio (results are rescaled by one factor)")
        return self


def _check_model(spec: DeploymentSpec) -> None:
    """The model name as the catalogue spells it, and a split the engines can run."""
    from pathlib import Path

    from dynamo_bench.errors import SpecError
    from dynamo_bench.perf.arch import ModelArch
    from dynamo_bench.perf.models import catalogue_model, spelling_problem

    if Path(spec.model).expanduser().is_dir():
        try:
            arch = ModelArch.of(spec.model)
        except SpecError:  # an unreadable config is reported where the model is loaded
            return
    else:
        entry = catalogue_model(spec.model)
        if entry is None:  # a Hugging Face id for a cluster, checked where it is used
            return
        problem = spelling_problem(spec.model)
        if problem:
            raise _field_error("model", problem)
        arch = ModelArch.from_config(entry.config, entry.name)
    for role, g in spec.workers.items():
        problem = arch.parallel_problem(g.tp, g.pp)
        if problem:
            raise _field_error(f"workers.{role}.{'pp' if problem.startswith('pp') else 'tp'}",
                               f"{problem}")


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_group(backend: Backend, mode: Mode, role: str, g: WorkerGroup) -> None:
    where = f"workers.{role}"
    if backend in GPU_BACKENDS:
        if not _is_pow2(g.tp):
            raise _field_error(f"{where}.tp", f"{g.tp} is invalid: {backend} needs a power of "
                               "two (1, 2, 4, 8, ...)")
        if not _is_pow2(g.pp) and g.pp != 1:
            raise _field_error(f"{where}.pp", f"{g.pp} is invalid: {backend} needs a power of two")
        if g.speedup_ratio != 1.0:
            raise _field_error(f"{where}.speedup_ratio",
                               "only the mocker has a speed-up ratio (remove it)")
    if g.block_size is not None:
        if backend == "vllm" and g.block_size not in VLLM_BLOCK_SIZES:
            raise _field_error(f"{where}.block_size", f"{g.block_size} is invalid: vllm accepts "
                               f"{', '.join(map(str, VLLM_BLOCK_SIZES))}")
        if backend == "trtllm" and not _is_pow2(g.block_size):
            raise _field_error(f"{where}.block_size",
                               f"{g.block_size} is invalid: trtllm needs a power of two")
    if g.kv_connector is not None and g.kv_connector not in CONNECTORS[backend]:
        raise _field_error(f"{where}.kv_connector",
                           f"{g.kv_connector!r} is not available on {backend} "
                           f"(choose from: {', '.join(CONNECTORS[backend])})")
    if mode == "disagg" and backend in GPU_BACKENDS and g.kv_connector == "none":
        raise _field_error(f"{where}.kv_connector", "disaggregated workers need a KV transfer "
                           "connector (use nixl, or remove the field)")
    if g.kv_offload is not None:
        _check_offload(backend, f"{where}.kv_offload", g)


def _check_offload(backend: Backend, where: str, g: WorkerGroup) -> None:
    off = g.kv_offload
    assert off is not None
    allowed = {
        "mocker": {"host_blocks", "offload_bandwidth_gb_s"},
        "vllm": {"host_cache_gb"},
        "sglang": {"host_cache_gb", "host_ratio"},
        "trtllm": {"host_cache_gb"},
    }[backend]
    given = {k for k, v in off.model_dump().items() if v is not None}
    wrong = sorted(given - allowed)
    if wrong:
        raise _field_error(f"{where}.{wrong[0]}", f"not used by {backend} "
                           f"(its offload fields: {', '.join(sorted(allowed))})")
    if not given:
        raise _field_error(where, f"is empty (set one of: {', '.join(sorted(allowed))})")
    if backend == "mocker" and off.host_blocks is None:
        raise _field_error(f"{where}.host_blocks", "the mocker needs host_blocks to offload")
    if backend == "vllm" and g.kv_connector not in (None, "kvbm", "lmcache"):
        raise _field_error(f"{where}", f"vllm offloads through the kvbm or lmcache connector, "
                           f"not {g.kv_connector!r} (set kv_connector: kvbm)")
