"""AIConfigurator's database of measured kernel timings, as a timing provider.

AIConfigurator (a regular dependency; CPU-only, its database ships in the wheel) predicts a
worker's prefill time and decode step time by adding up per-operation timings measured on real
GPUs for each engine (GEMMs, attention, MoE, all-reduces). Where its database covers a (model,
GPU, engine, precision, parallelism), `aic_predict` gives the prefill time of one request and the
decode step time at a batch size and context length, and `aic_tables` turns them into the same
timing tables as the roofline model (perf/tables.py).

Calls follow AIConfigurator's SDK the way Dynamo's planner does
(`dynamo/planner/monitoring/aic_estimator.py`): a per-(system, backend) database, a model built
from a config.json, `run_static` in context mode for prefill and the engine handle's
`predict_decode_latency` for one decode step. The model is always given as a local directory
holding the architecture's config.json (so any catalogue or user model is read the same way,
and nothing is downloaded). MoE layers are sharded like the generated engine commands shard
them: expert weights tensor-parallel over the worker's GPUs (moe_tp = tp, moe_ep = 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dynamo_bench.cache import cache_root
from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.perf.arch import ModelArch

#: This project's GPU names -> AIConfigurator's system names.
SYSTEMS = {"h100_sxm": "h100_sxm", "h200_sxm": "h200_sxm", "a100_80gb": "a100_sxm",
           "b200": "b200_sxm", "gb200": "gb200", "l40s": "l40s"}
#: Engines -> AIConfigurator's backend databases. The mocker simulates a vLLM-like engine.
ENGINES = {"mocker": "vllm", "vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}


class AICUnavailable(DynamoBenchError):
    """AIConfigurator's database does not cover the request (the reason says what is missing)."""


@lru_cache(maxsize=1)
def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("aiconfigurator")


@lru_cache(maxsize=None)
def database_version(gpu: str, engine: str) -> str:
    """The database version AIConfigurator uses for `gpu` and `engine` (its latest).

    Finding it parses every database's YAML metadata (about 6 s on a 2-core machine), and the
    answer depends only on the installed package, so it is kept under the cache root, keyed
    by a digest of the package's file list (a reinstall or upgrade asks again).
    """
    system, backend = _system(gpu), ENGINES[engine]
    path = cache_root() / "aic-versions" / f"{_install_digest()}-{system}-{backend}.txt"
    if path.is_file():
        return path.read_text().strip()
    from aiconfigurator_core.sdk.perf_database import get_latest_database_version

    found = str(get_latest_database_version(system, backend))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(found + "\n")
    tmp.replace(path)
    return found


@lru_cache(maxsize=1)
def _install_digest() -> str:
    """A digest of the installed AIConfigurator core's RECORD (every file with its hash)."""
    from importlib.metadata import distribution

    record = distribution("aiconfigurator-core").read_text("RECORD") or version()
    return hashlib.sha256(record.encode()).hexdigest()[:16]


def _system(gpu: str) -> str:
    try:
        return SYSTEMS[gpu]
    except KeyError:
        raise AICUnavailable(f"AIConfigurator has no system for GPU {gpu!r}") from None


@lru_cache(maxsize=None)
def _database(system: str, backend: str) -> Any:
    from aiconfigurator_core.sdk.perf_database import get_database, get_latest_database_version

    with quiet():
        version = get_latest_database_version(system, backend)
        db = get_database(system=system, backend=backend, version=version)
    if db is None:
        raise AICUnavailable(f"AIConfigurator has no database for {system}/{backend}")
    return db


def model_dir(arch_config: dict[str, Any], name: str) -> Path:
    """A directory holding `arch_config` as config.json, for AIConfigurator to read."""
    key = json.dumps(arch_config, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_root() / "aic-models" / f"{name}-{digest}"
    config = path / "config.json"
    if not config.is_file():
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".config.{digest}.tmp"
        tmp.write_text(key)
        tmp.replace(config)
    return path


class quiet:
    """Silence AIConfigurator's logging (its loaders warn on every fallback row, its search logs
    "no successful experiment" as an error) and its warnings for the duration of a block."""

    def __enter__(self) -> None:
        logging.disable(logging.CRITICAL)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        logging.disable(logging.NOTSET)


def _model(path: Path, arch: ModelArch, system: str, backend: str, tp: int, pp: int,
           precision: str) -> tuple[Any, Any]:
    from aiconfigurator_core.sdk import common, config
    from aiconfigurator_core.sdk.models import get_model

    db = _database(system, backend)
    fp8 = precision == "fp8"
    fmha_fp8 = fp8 and "fp8" in db.supported_quant_mode.get("context_attention", [])
    moe = {"moe_tp_size": tp, "moe_ep_size": 1} if arch.is_moe else {}
    mc = config.ModelConfig(
        tp_size=tp, pp_size=pp,
        gemm_quant_mode=common.GEMMQuantMode["fp8" if fp8 else "bfloat16"],
        kvcache_quant_mode=common.KVCacheQuantMode["fp8" if fp8 else "bfloat16"],
        fmha_quant_mode=common.FMHAQuantMode["fp8" if fmha_fp8 else "bfloat16"],
        moe_quant_mode=common.MoEQuantMode["fp8" if fp8 else "bfloat16"],
        comm_quant_mode=common.CommQuantMode.half, **moe)
    return get_model(str(path), mc, backend), db


class AICWorker:
    """One worker (model, GPU, engine, TP, PP, precision) in AIConfigurator's database.

    Construction checks coverage with one prediction and raises `AICUnavailable` with the reason
    when the database cannot time it (no such system or engine database, an unsupported
    precision or architecture).
    """

    def __init__(self, arch: ModelArch, arch_config: dict[str, Any], gpu: str, engine: str,
                 *, tp: int = 1, pp: int = 1, precision: str = "bf16") -> None:
        self.what = f"{arch.name} on {gpu}/{engine} tp{tp} pp{pp} {precision}"
        self.system, self.backend = _system(gpu), ENGINES[engine]
        try:
            with quiet():
                self._m, self._db = _model(model_dir(arch_config, arch.name), arch, self.system,
                                           self.backend, tp, pp, precision)
            self.prefill_ms(128)
            self.decode_ms(1, 128)
        except AICUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - the SDK raises many kinds for "not covered"
            raise AICUnavailable(f"AIConfigurator cannot time {self.what}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None

    def prefill_ms(self, isl: int) -> float:
        """Prefill time of one `isl`-token request (no queueing), ms."""
        from aiconfigurator_core.sdk import config
        from aiconfigurator_core.sdk.backends.factory import get_backend

        with quiet():
            summary = get_backend(self.backend).run_static(
                self._m, self._db, config.RuntimeConfig(batch_size=1, isl=int(isl), osl=2),
                "static_ctx", stride=32).get_summary_df()
        return float(summary["ttft"][0])

    def decode_ms(self, batch: int, context: int) -> float:
        """One decode step for `batch` sequences of `context` tokens, ms."""
        from aiconfigurator_core.sdk.rust_engine_step import _cached_engine_handle

        with quiet():
            return float(_cached_engine_handle(self._m, self._db).predict_decode_latency(
                int(batch), int(context), 2))


def aic_predict(model: str, gpu: str, engine: str, *, tp: int = 1, pp: int = 1,
                isl: int = 1024, batch: int = 1, context: int | None = None,
                precision: str = "bf16") -> dict[str, float]:
    """AIConfigurator's prefill time for one `isl`-token request (`ttft_ms`, no queueing) and
    decode step time for `batch` sequences at `context` tokens (`itl_ms`; default: isl).

    `model` is a catalogue name or a model directory.

    Raises:
        AICUnavailable: the combination is outside its database.
    """
    w = _worker(model, gpu, engine, tp, pp, precision)
    return {"ttft_ms": w.prefill_ms(isl), "itl_ms": w.decode_ms(batch, context or isl)}


@lru_cache(maxsize=256)
def _worker(model: str, gpu: str, engine: str, tp: int, pp: int, precision: str) -> AICWorker:
    arch, config = arch_and_config(model)
    return AICWorker(arch, config, gpu, engine, tp=tp, pp=pp, precision=precision)


def arch_and_config(model: str) -> tuple[ModelArch, dict[str, Any]]:
    """A catalogue name's or a model directory's architecture and its config.json content."""
    from dynamo_bench.perf.models import catalogue_model

    path = Path(model).expanduser()
    if path.is_dir():
        return ModelArch.from_dir(path), json.loads((path / "config.json").read_text())
    entry = catalogue_model(model)
    if entry is None:
        raise AICUnavailable(f"{model!r} is neither a model directory nor a catalogue model")
    return ModelArch.from_config(entry.config, entry.name), entry.config


def aic_tables(worker: AICWorker, *, kv_tokens: int, max_context: int = 32768
               ) -> dict[str, np.ndarray]:
    """The five timing-table arrays from AIConfigurator's predictions (see perf/tables.py)."""
    isl = np.unique(np.round(np.geomspace(16, max_context, 16)).astype(np.int64))
    ttft = [worker.prefill_ms(int(n)) for n in isl]
    ctx = np.unique(np.round(np.geomspace(64, max_context, 10)).astype(np.int64))
    active = np.unique(np.round(np.geomspace(64, max(kv_tokens, 1024), 12)).astype(np.int64))
    itl = np.empty((len(active), len(ctx)))
    for i, a in enumerate(active):
        for j, c in enumerate(ctx):
            batch = int(max(1, round(a / c)))
            itl[i, j] = worker.decode_ms(batch, int(min(c, a)))
    return {"prefill_isl": isl.astype(np.float64), "prefill_ttft_ms": np.array(ttft),
            "decode_active_kv_tokens": active.astype(np.float64),
            "decode_context_length": ctx.astype(np.float64), "decode_itl": itl}
