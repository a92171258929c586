"""The mocker's timing tables: NPZ files computed from the performance model, cached by content.

Keys, as the mocker reads them (`--planner-profile-data FILE.npz`, or the replay's
`dynamo_profile` timing model):

- `prefill_isl` (1-D, tokens) and `prefill_ttft_ms` (1-D): prefill time by new tokens;
- `decode_active_kv_tokens` (1-D), `decode_context_length` (1-D) and `decode_itl` (2-D, ms):
  decode step time by the KV tokens active in the batch and the mean context length (the batch
  size is their ratio).

Each NPZ has a JSON sidecar with its provenance (provider, model, GPU, TP, PP, precision,
backend, memory fit) and the KV capacity `num_gpu_blocks` to pass to the mocker.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.memory import Fit, memory_fit
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms

#: Bump when the model's formulas or factors change: cached tables are then recomputed.
MODEL_VERSION = "roofline-1"
NPZ_KEYS = ("prefill_isl", "prefill_ttft_ms", "decode_active_kv_tokens", "decode_context_length",
            "decode_itl")


@dataclass(frozen=True)
class TimingTables:
    """A table file, its KV capacity and where it came from."""

    path: Path
    num_gpu_blocks: int
    block_size: int
    provenance: dict
    kv_transfer_gb_s: float | None = None
    kv_bytes_per_token: int | None = None

    def load(self) -> dict[str, np.ndarray]:
        with np.load(self.path) as data:
            return {k: data[k] for k in NPZ_KEYS}


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(lo, hi, n)).astype(np.int64))


def compute_tables(arch: ModelArch, hw: Hardware, *, kv_tokens: int,
                   max_context: int = 131072) -> dict[str, np.ndarray]:
    """The five arrays for `arch` on `hw`, covering contexts up to `max_context` tokens and up
    to `kv_tokens` active KV tokens."""
    isl = _grid(16, max_context, 28)
    ttft = np.array([prefill_ms(arch, hw, int(n)) for n in isl])
    ctx = _grid(16, max_context, 18)
    active = _grid(16, max(kv_tokens, 1024), 22)
    itl = np.empty((len(active), len(ctx)))
    for i, a in enumerate(active):
        for j, c in enumerate(ctx):
            batch = max(1.0, a / c)
            itl[i, j] = decode_step_ms(arch, hw, batch, min(float(c), float(a)))
    return {"prefill_isl": isl.astype(np.float64), "prefill_ttft_ms": ttft,
            "decode_active_kv_tokens": active.astype(np.float64),
            "decode_context_length": ctx.astype(np.float64), "decode_itl": itl}


def tables_cache_dir() -> Path:
    from dynamo_bench.serving.model_dir import cache_root

    return cache_root() / "tables"


def timing_tables(arch: ModelArch, hw: Hardware, *, block_size: int = 64,
                  gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int = 8192,
                  max_context: int = 131072, cache_dir: Path | None = None
                  ) -> tuple[TimingTables | None, Fit]:
    """Tables for one worker configuration, from the cache or computed (then cached).

    Returns (None, fit) when the configuration does not fit in memory.
    """
    fit = memory_fit(arch, hw, block_size=block_size,
                     gpu_memory_utilization=gpu_memory_utilization,
                     max_num_batched_tokens=max_num_batched_tokens)
    if not fit.fits:
        return None, fit
    max_context = min(max_context, max(fit.kv_tokens, 1024))
    inputs = {"provider": "roofline", "model_version": MODEL_VERSION, "arch": asdict(arch),
              "gpu": hw.gpu.name, "tp": hw.tp, "pp": hw.pp, "precision": hw.precision,
              "backend": hw.backend, "block_size": block_size,
              "gpu_memory_utilization": gpu_memory_utilization,
              "max_num_batched_tokens": max_num_batched_tokens, "max_context": max_context}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    root = cache_dir or tables_cache_dir()
    path = root / f"{arch.name}-{hw.gpu.name}-tp{hw.tp}-pp{hw.pp}-{hw.precision}-{key}.npz"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return TimingTables(path, meta["num_gpu_blocks"], block_size, meta), fit
    root.mkdir(parents=True, exist_ok=True)
    arrays = compute_tables(arch, hw, kv_tokens=fit.kv_tokens, max_context=max_context)
    meta = {**inputs, "num_gpu_blocks": fit.num_gpu_blocks, "kv_tokens": fit.kv_tokens,
            "fit": fit.reason}
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return TimingTables(path, fit.num_gpu_blocks, block_size, meta), fit


def save_tables(arrays: dict[str, np.ndarray], path: Path, provenance: dict) -> Path:
    """Write an NPZ (and its JSON sidecar) from arrays, e.g. tables fitted from measurements."""
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"tables lack {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: arrays[k] for k in NPZ_KEYS})
    path.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    return path
