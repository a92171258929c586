"""The mocker's timing tables: NPZ files computed from the performance model, cached by content.

Keys, as the mocker reads them (`--planner-profile-data FILE.npz`, or the replay's
`dynamo_profile` timing model):

- `prefill_isl` (1-D, tokens) and `prefill_ttft_ms` (1-D): prefill time by new tokens;
- `decode_active_kv_tokens` (1-D), `decode_context_length` (1-D) and `decode_itl` (2-D, ms):
  decode step time by the KV tokens active in the batch and the mean context length (the batch
  size is their ratio).

Each NPZ has a JSON sidecar with its provenance (provider, model, GPU, TP, PP, precision,
engine, the provider chain's choices). Which provider computes them is perf/providers.py's job.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms

_LOAD_LOCK = threading.Lock()
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
        # one reader at a time: np.load parses the header with ast.literal_eval, which on
        # CPython 3.11 can fail in concurrent threads ("AST constructor recursion depth
        # mismatch"), and the replay evaluator estimates start points two at a time
        with _LOAD_LOCK, np.load(self.path) as data:
            return {k: data[k] for k in NPZ_KEYS}

    def lookup(self) -> TableLookup:
        return TableLookup(self.load())


class TableLookup:
    """Read timing tables the way the mocker does: prefill by new tokens, decode step by active
    KV tokens (batch x context) and context, interpolated linearly and held at the edges."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.a = arrays

    def prefill_ms(self, tokens: float) -> float:
        return float(np.interp(tokens, self.a["prefill_isl"], self.a["prefill_ttft_ms"]))

    def decode_ms(self, batch: float, context: float) -> float:
        active = np.asarray(self.a["decode_active_kv_tokens"])
        ctx = np.asarray(self.a["decode_context_length"])
        itl = np.asarray(self.a["decode_itl"])
        by_ctx = [float(np.interp(context, ctx, row)) for row in itl]
        return float(np.interp(batch * context, active, by_ctx))


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


def save_tables(arrays: dict[str, np.ndarray], path: Path, provenance: dict) -> Path:
    """Write an NPZ (and its JSON sidecar) from arrays, e.g. tables fitted from measurements."""
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"tables lack {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: arrays[k] for k in NPZ_KEYS})
    path.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    return path
