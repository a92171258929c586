"""Replay probes kept on disk, so a configuration scores the same in every run on a machine.

Dynamo's replay picks among equal KV-router workers at random and has no seed for it, so two
runs of one probe can differ. The replay evaluator keeps the first answer (a median of repeats
near an SLA limit) for each probe in `<cache root>/replay-probes.db` (SQLite, shared by every
process): a resumed study, a second study, a benchmark's ground truth and a notebook all read
the same number for the same probe. A probe's key is everything that decides its result: the
deployment, the workload at that load, the SLA limits near which it was repeated, the Dynamo
version and a digest of the code and data that make the timing tables and the metrics.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dynamo_bench.cache import cache_root
from dynamo_bench.specs.metrics import Metrics

_PACKAGE = Path(__file__).resolve().parents[1]
#: the files whose contents decide a replay probe's metrics
_SOURCES = ("replay.py", "loadgen/steady.py", "perf", "tune/evaluate.py", "tune/probes.py")


@cache
def code_digest() -> str:
    """A digest of Dynamo's version and of dynamo-bench's replay, timing and metric code."""
    h = hashlib.sha256()
    try:
        h.update(version("ai-dynamo").encode())
    except PackageNotFoundError:
        h.update(b"ai-dynamo: unknown")
    for name in _SOURCES:
        path = _PACKAGE / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".pyc") \
            if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(_PACKAGE)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class ProbeStore:
    """Metrics per probe key in one SQLite file; safe across threads and processes.

    `get` returns None for a probe never stored; `put` keeps the first answer stored for a key
    (a second writer of the same key leaves the first one in place)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / "replay-probes.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False,
                                   isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS probes "
                             "(key TEXT PRIMARY KEY, metrics TEXT NOT NULL)")

    @staticmethod
    def key(*parts: object) -> str:
        text = json.dumps([code_digest(), *parts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Metrics | None:
        with self._lock:
            row = self._db.execute("SELECT metrics FROM probes WHERE key = ?",
                                   (key,)).fetchone()
        return Metrics.model_validate_json(row[0]) if row else None

    def put(self, key: str, metrics: Metrics) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO probes (key, metrics) VALUES (?, ?)",
                             (key, metrics.model_dump_json()))

    def close(self) -> None:
        with self._lock:
            self._db.close()
