"""Timing providers and the chain that picks one per worker group, most accurate first.

A provider turns one worker (model, GPU, engine, TP, PP, precision) into the mocker's timing
tables. The default chain (`timing: auto`) asks, in order:

1. `MeasuredProvider`: tables measured on a real engine by `dynamo-bench profile` and registered
   in the cache for exactly this worker;
2. `AIConfiguratorProvider`: AIConfigurator's database of measured kernel timings, where it
   covers the worker;
3. `RooflineProvider`: the calibrated roofline (always answers).

The first that covers the worker gives its tables; the others' reasons for not covering it are
kept in the tables' provenance (`chain`), so every table says where it came from and why.
`timing: roofline` and `timing: aiconfigurator` ask one provider only; `timing: FILE.npz` uses a
given file.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynamo_bench.cache import cache_root
from dynamo_bench.errors import UserError
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.roofline import Hardware
from dynamo_bench.perf.tables import NPZ_KEYS, TimingTables, compute_tables, save_tables

#: Bump when the tables' formulas or grids change: cached tables are then recomputed.
TABLES_VERSION = "tables-2"


@dataclass(frozen=True)
class WorkerQuery:
    """What a provider is asked to time: one worker and the range its tables must cover.

    `model` is what the spec names (a catalogue name or a model directory), `hw` the worker's
    hardware (its `backend` is the engine being simulated), `kv_tokens` the KV capacity from the
    memory fit (the decode table's upper end) and `max_context` the longest context to cover.
    """

    model: str
    arch: ModelArch
    hw: Hardware
    kv_tokens: int
    max_context: int

    def describe(self) -> dict[str, Any]:
        return {"model": self.arch.name, "gpu": self.hw.gpu.name, "engine": self.hw.engine,
                "tp": self.hw.tp, "pp": self.hw.pp, "precision": self.hw.precision}

    def worker_key(self) -> str:
        """A stable key for the worker alone (architecture, GPU, engine, parallelism)."""
        text = json.dumps({**self.describe(), "arch": asdict(self.arch)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


class TimingProvider(abc.ABC):
    """A source of timing tables for one worker.

    Contract: `cover` returns None when the provider can time the worker and otherwise a one-line
    reason; it never raises for lack of coverage. `arrays` is called only after `cover` returned
    None and returns the `NPZ_KEYS` arrays (perf/tables.py), the same for the same query (they
    are cached by `cache_inputs`). `provenance` says where the numbers come from (names and
    versions), and is stored beside the tables.
    """

    name: str

    @abc.abstractmethod
    def cover(self, q: WorkerQuery) -> str | None:
        """None if this provider can time `q`, else why not."""

    @abc.abstractmethod
    def arrays(self, q: WorkerQuery) -> dict[str, np.ndarray]:
        """The timing-table arrays for `q`."""

    def provenance(self, q: WorkerQuery) -> dict[str, Any]:
        return {}

    def file(self, q: WorkerQuery) -> Path | None:
        """The file the tables already are (measured or given), or None to compute them."""
        return None

    def cache_inputs(self, q: WorkerQuery) -> dict[str, Any]:
        """What determines computed arrays: their cache key."""
        return {"provider": self.name, "tables_version": TABLES_VERSION,
                "arch": asdict(q.arch), **q.describe(), "kv_tokens": q.kv_tokens,
                "max_context": q.max_context, **self.provenance(q)}


class RooflineProvider(TimingProvider):
    """The calibrated roofline (perf/roofline.py): covers every dense or MoE decoder."""

    name = "roofline"

    def cover(self, q: WorkerQuery) -> str | None:
        return None

    def arrays(self, q: WorkerQuery) -> dict[str, np.ndarray]:
        return compute_tables(q.arch, q.hw, kv_tokens=q.kv_tokens, max_context=q.max_context)

    def provenance(self, q: WorkerQuery) -> dict[str, Any]:
        from dynamo_bench.perf.calibration import calibration

        return {"calibration_version": (q.hw.constants or calibration()).version,
                "calibration_key": q.hw.calibration_key}


class AIConfiguratorProvider(TimingProvider):
    """AIConfigurator's database (perf/aic.py), where it covers the worker."""

    name = "aiconfigurator"

    def __init__(self) -> None:
        self._workers: dict[tuple, Any] = {}

    def _worker(self, q: WorkerQuery) -> Any:
        from dynamo_bench.perf.aic import AICUnavailable, AICWorker, arch_and_config

        key = (q.worker_key(),)
        if key not in self._workers:
            try:
                _, config = arch_and_config(q.model)
                self._workers[key] = AICWorker(q.arch, config, q.hw.gpu.name, q.hw.backend,
                                               tp=q.hw.tp, pp=q.hw.pp,
                                               precision=q.hw.precision)
            except AICUnavailable as e:
                self._workers[key] = str(e)
        return self._workers[key]

    def cover(self, q: WorkerQuery) -> str | None:
        # "not covered" costs a database load to find out: remember it between processes
        verdict = cache_root() / "aic-coverage" / (f"{q.worker_key()}-{self._version()}-"
                                                   f"{TABLES_VERSION}.txt")
        if verdict.is_file():
            return verdict.read_text().strip() or None
        w = self._worker(q)
        reason = w if isinstance(w, str) else None
        if reason is not None:
            verdict.parent.mkdir(parents=True, exist_ok=True)
            verdict.write_text(reason + "\n")
        return reason

    @staticmethod
    def _version() -> str:
        from dynamo_bench.perf.aic import version

        return version()

    def arrays(self, q: WorkerQuery) -> dict[str, np.ndarray]:
        from dynamo_bench.perf.aic import aic_tables

        return aic_tables(self._worker(q), kv_tokens=q.kv_tokens,
                          max_context=min(q.max_context, 32768))

    def provenance(self, q: WorkerQuery) -> dict[str, Any]:
        from dynamo_bench.perf.aic import database_version, version

        return {"aiconfigurator_version": version(),
                "database": f"{q.hw.gpu.name}/{q.hw.engine} "
                            f"{database_version(q.hw.gpu.name, q.hw.engine)}"}


def measured_dir() -> Path:
    """Where `dynamo-bench profile` registers tables measured on real engines."""
    return cache_root() / "measured"


class MeasuredProvider(TimingProvider):
    """Tables measured on a real engine for exactly this worker (registered by `profile`)."""

    name = "measured"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or measured_dir()

    def path(self, q: WorkerQuery) -> Path:
        return self.root / f"{q.worker_key()}.npz"

    def cover(self, q: WorkerQuery) -> str | None:
        if self.path(q).is_file():
            return None
        return "no tables measured on this worker (dynamo-bench profile registers them)"

    def arrays(self, q: WorkerQuery) -> dict[str, np.ndarray]:
        with np.load(self.path(q)) as data:
            return {k: data[k] for k in NPZ_KEYS}

    def provenance(self, q: WorkerQuery) -> dict[str, Any]:
        meta = self.path(q).with_suffix(".json")
        return {"measured": json.loads(meta.read_text()) if meta.is_file() else {}}

    def file(self, q: WorkerQuery) -> Path | None:
        return self.path(q)


def register_measured(q: WorkerQuery, arrays: dict[str, np.ndarray], provenance: dict,
                      root: Path | None = None) -> Path:
    """Keep tables measured on a real engine so that the default chain uses them for `q`."""
    path = (root or measured_dir()) / f"{q.worker_key()}.npz"
    return save_tables(arrays, path, {**provenance, **q.describe()})


class FileProvider(TimingProvider):
    """A timing-table file the user gave (`timing: tables.npz`)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self._file = path

    def cover(self, q: WorkerQuery) -> str | None:
        return None if self._file.is_file() else f"{self._file} not found"

    def arrays(self, q: WorkerQuery) -> dict[str, np.ndarray]:
        with np.load(self._file) as data:
            return {k: data[k] for k in NPZ_KEYS}

    def provenance(self, q: WorkerQuery) -> dict[str, Any]:
        meta = self._file.with_suffix(".json")
        return {"file": str(self._file),
                "measured": json.loads(meta.read_text()) if meta.is_file() else {}}

    def file(self, q: WorkerQuery) -> Path | None:  # type: ignore[override]
        return self._file


def chain_for(timing: str) -> list[TimingProvider]:
    """The providers a spec's `timing` asks, in order (see the module docstring)."""
    if timing == "auto":
        return [MeasuredProvider(), AIConfiguratorProvider(), RooflineProvider()]
    if timing == "roofline":
        return [RooflineProvider()]
    if timing == "aiconfigurator":
        return [AIConfiguratorProvider()]
    return [FileProvider(Path(timing).expanduser())]


_DEFAULT_CHAINS: dict[str, list[TimingProvider]] = {}


def default_chain(timing: str) -> list[TimingProvider]:
    """`chain_for(timing)`, one instance per process (providers cache their coverage checks)."""
    if timing not in _DEFAULT_CHAINS:
        _DEFAULT_CHAINS[timing] = chain_for(timing)
    return _DEFAULT_CHAINS[timing]


class NotCoveredError(UserError):
    """No provider of the chain could time a worker."""


def tables_from_chain(q: WorkerQuery, chain: list[TimingProvider], *, num_gpu_blocks: int,
                      block_size: int, cache_dir: Path | None = None) -> TimingTables:
    """Tables for `q` from the first provider of `chain` that covers it, cached by content.

    Raises:
        NotCoveredError: no provider covers `q` (the message has every provider's reason).
    """
    skipped: list[dict[str, str]] = []
    for provider in chain:
        given = provider.file(q)
        cached = None if given is not None else _cached_path(provider, q, cache_dir)
        # a table computed before means the provider covered this worker: skip the check
        if cached is None or not _complete(cached):
            reason = provider.cover(q)
            if reason is not None:
                skipped.append({"provider": provider.name, "skipped": reason})
                continue
        meta = {"provider": provider.name, **q.describe(), **provider.provenance(q),
                "chain": [*skipped, {"provider": provider.name, "used": "covers"}],
                "kv_tokens": q.kv_tokens, "max_context": q.max_context}
        if given is not None:
            path = given
        else:
            assert cached is not None
            path = cached if _complete(cached) else _write(provider.arrays(q), meta, cached)
        return TimingTables(path, num_gpu_blocks, block_size,
                            {**meta, "num_gpu_blocks": num_gpu_blocks})
    reasons = "; ".join(f"{s['provider']}: {s['skipped']}" for s in skipped)
    raise NotCoveredError(f"timing: nothing covers {q.arch.name} on {q.hw.gpu.name}/"
                          f"{q.hw.engine} tp{q.hw.tp} pp{q.hw.pp} {q.hw.precision} ({reasons}); "
                          "use timing: auto or roofline")


def tables_cache_dir() -> Path:
    return cache_root() / "tables"


def _cached_path(provider: TimingProvider, q: WorkerQuery, cache_dir: Path | None) -> Path:
    inputs = provider.cache_inputs(q)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()
                         ).hexdigest()[:20]
    name = (f"{q.arch.name}-{q.hw.gpu.name}-{q.hw.engine}-tp{q.hw.tp}-pp{q.hw.pp}-"
            f"{q.hw.precision}-{provider.name}-{key}")
    return (cache_dir or tables_cache_dir()) / f"{name}.npz"


def _complete(path: Path) -> bool:
    return path.exists() and path.with_suffix(".json").exists()


def _write(arrays: dict[str, np.ndarray], meta: dict, path: Path) -> Path:
    """Write an NPZ and its sidecar atomically (concurrent writers of one key are harmless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **{k: arrays[k] for k in NPZ_KEYS})
    meta_tmp = Path(tmp).with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    os.replace(meta_tmp, path.with_suffix(".json"))
    os.replace(tmp, path)
    return path
