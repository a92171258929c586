"""AIConfigurator as an optional provider: its database of measured kernel timings, per op.

Install with `uv sync --extra aic` (aiconfigurator 0.12.0, CPU-only; its database ships in the
wheel). Where the database covers a (model, GPU, backend, precision), `aic_predict` gives the
prefill time of one request and the decode step time at a batch size and context length, and
`aic_tables` turns them into the same timing tables as the roofline model (perf/tables.py).

Calls follow AIConfigurator's SDK the way Dynamo's planner does
(`dynamo/planner/monitoring/aic_estimator.py`): a per-(system, backend) database, a model built
from its bundled Hugging Face configs, `run_static` in context mode for prefill and the engine
handle's `predict_decode_latency` for one decode step.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.perf.models import catalogue_model

# AIConfigurator's bundled configs know Llama 3.1 under the older repository names.
_HF_ALIASES = {
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B-Instruct": "meta-llama/Meta-Llama-3.1-70B",
    "meta-llama/Llama-3.1-405B-Instruct": "meta-llama/Meta-Llama-3.1-405B",
}
_BACKEND = {"mocker": "vllm", "vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}


class AICUnavailable(DynamoBenchError):
    """AIConfigurator is not installed, or its database does not cover the request."""


def available() -> bool:
    try:
        import aiconfigurator_core.sdk  # noqa: F401
    except ImportError:
        return False
    return True


def hf_id(model: str) -> str:
    """The repository id AIConfigurator knows `model` (a catalogue name or HF id) under."""
    entry = catalogue_model(model)
    name = entry.hf_id if entry else model
    return _HF_ALIASES.get(name, name)


@lru_cache(maxsize=None)
def _database(system: str, backend: str) -> Any:
    from aiconfigurator_core.sdk.perf_database import get_database, get_latest_database_version

    version = get_latest_database_version(system, backend)
    db = get_database(system=system, backend=backend, version=version)
    if db is None:
        raise AICUnavailable(f"AIConfigurator has no database for {system}/{backend}")
    return db


def _model(model: str, system: str, backend: str, tp: int, pp: int, precision: str) -> tuple:
    from aiconfigurator_core.sdk import common, config
    from aiconfigurator_core.sdk.models import get_model

    db = _database(system, backend)
    fp8 = precision == "fp8"
    fmha_fp8 = fp8 and "fp8" in db.supported_quant_mode.get("context_attention", [])
    mc = config.ModelConfig(
        tp_size=tp, pp_size=pp,
        gemm_quant_mode=common.GEMMQuantMode["fp8" if fp8 else "bfloat16"],
        kvcache_quant_mode=common.KVCacheQuantMode["fp8" if fp8 else "bfloat16"],
        fmha_quant_mode=common.FMHAQuantMode["fp8" if fmha_fp8 else "bfloat16"],
        moe_quant_mode=common.MoEQuantMode["fp8" if fp8 else "bfloat16"],
        comm_quant_mode=common.CommQuantMode.half)
    return get_model(hf_id(model), mc, backend), db


def aic_predict(model: str, gpu: str, backend: str, *, tp: int = 1, pp: int = 1,
                isl: int = 1024, batch: int = 1, context: int | None = None,
                precision: str = "bf16") -> dict[str, float]:
    """AIConfigurator's prefill time for one `isl`-token request (`ttft_ms`, no queueing) and
    decode step time for `batch` sequences at `context` tokens (`itl_ms`; default: isl).

    Raises:
        AICUnavailable: not installed, or the combination is outside its database.
    """
    if not available():
        raise AICUnavailable("AIConfigurator is not installed (uv sync --extra aic)")
    logging.disable(logging.WARNING)  # its database loaders warn on every fallback row
    try:
        from aiconfigurator_core.sdk import config
        from aiconfigurator_core.sdk.backends.factory import get_backend
        from aiconfigurator_core.sdk.rust_engine_step import _cached_engine_handle

        b = _BACKEND[backend]
        m, db = _model(model, gpu, b, tp, pp, precision)
        summary = get_backend(b).run_static(m, db, config.RuntimeConfig(
            batch_size=1, isl=isl, osl=2), "static_ctx", stride=32).get_summary_df()
        ttft = float(summary["ttft"][0])
        itl = float(_cached_engine_handle(m, db).predict_decode_latency(
            batch, context or isl, 2))
    except AICUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - the SDK raises many kinds for "not covered"
        raise AICUnavailable(f"AIConfigurator cannot predict {model} on {gpu}/{backend} "
                             f"tp{tp} pp{pp} {precision}: {type(e).__name__}: {e}") from None
    finally:
        logging.disable(logging.NOTSET)
    return {"ttft_ms": ttft, "itl_ms": itl}


def aic_tables(model: str, gpu: str, backend: str, *, tp: int, pp: int, precision: str,
               kv_tokens: int, max_context: int = 32768) -> dict[str, np.ndarray]:
    """The five timing-table arrays from AIConfigurator's predictions (see perf/tables.py)."""
    isl = np.unique(np.round(np.geomspace(16, max_context, 16)).astype(np.int64))
    ttft = [aic_predict(model, gpu, backend, tp=tp, pp=pp, isl=int(n), precision=precision)
            ["ttft_ms"] for n in isl]
    ctx = np.unique(np.round(np.geomspace(64, max_context, 10)).astype(np.int64))
    active = np.unique(np.round(np.geomspace(64, max(kv_tokens, 1024), 12)).astype(np.int64))
    itl = np.empty((len(active), len(ctx)))
    for i, a in enumerate(active):
        for j, c in enumerate(ctx):
            batch = int(max(1, round(a / c)))
            itl[i, j] = aic_predict(model, gpu, backend, tp=tp, pp=pp, isl=int(min(c, a)),
                                    batch=batch, context=int(min(c, a)),
                                    precision=precision)["itl_ms"]
    return {"prefill_isl": isl.astype(np.float64), "prefill_ttft_ms": np.array(ttft),
            "decode_active_kv_tokens": active.astype(np.float64),
            "decode_context_length": ctx.astype(np.float64), "decode_itl": itl}
