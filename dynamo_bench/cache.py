"""Where dynamo-bench keeps what it builds once and reuses: the cache root (ground floor).

`$DYNAMO_BENCH_CACHE`, or `~/.cache/dynamo-bench`. Model directories, timing tables, measured
tables and AIConfigurator model configs live in sub-folders of it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root (`$DYNAMO_BENCH_CACHE` or ~/.cache/dynamo-bench); not created here."""
    env = os.environ.get("DYNAMO_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dynamo-bench"
