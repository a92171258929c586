"""Checks made before anything starts or is written: the trace file and the server to load.

Each raises `SpecError` naming the field and the fix, so that a mistake costs one line instead
of a stack start-up and an AIPerf run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dynamo_bench.errors import SpecError
from dynamo_bench.specs.workload import TraceSpec, WorkloadSpec

#: AIPerf's tokens per `hash_ids` entry when the trace spec gives none (its loaders' metadata).
DEFAULT_BLOCK_SIZE = {"mooncake_trace": 512, "bailian_trace": 16}
#: Formats whose lines are JSON objects (AIPerf reads them as JSONL).
JSONL_FORMATS = {"mooncake_trace", "single_turn", "multi_turn", "bailian_trace"}


@dataclass(frozen=True)
class TraceInfo:
    """What the trace file holds: its record count and whether its first record has a
    timestamp (AIPerf then replays the timestamps unless told not to)."""

    path: Path
    records: int
    timestamps: bool


def trace_path(trace: TraceSpec) -> Path:
    return Path(trace.path).expanduser().resolve()


def first_record_has_timestamp(path: Path) -> bool:
    """AIPerf's rule (config/flags/_converter_profiling.py: `_first_record_has_timestamp`):
    the first non-empty line is a JSON object with a non-null `timestamp`."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    data = json.loads(line)
                    return isinstance(data, dict) and data.get("timestamp") is not None
    except (OSError, ValueError):
        return False
    return False


def check_trace(workload: WorkloadSpec) -> TraceInfo | None:
    """Read the workload's trace file (None without one) and check every record.

    Raises:
        SpecError: the file is missing, a line is not a JSON object, a record's `hash_ids`
            do not fit its `input_length` at the block size, or `fixed_schedule: true` on a
            trace without timestamps.
    """
    trace = workload.trace
    if trace is None:
        return None
    path = trace_path(trace)
    if not path.is_file():
        raise SpecError("trace.path", f"{path} does not exist (give the path of a "
                        f"{trace.format} file; relative paths start from the working folder)")
    if trace.format not in JSONL_FORMATS:
        return TraceInfo(path, 0, first_record_has_timestamp(path))
    block = trace.block_size or DEFAULT_BLOCK_SIZE.get(trace.format)
    records = 0
    timestamps = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise SpecError("trace.path", f"{path} line {number} is not valid JSON "
                                f"({e.msg} at column {e.colno}): each line must be one JSON "
                                "object") from None
            if not isinstance(record, dict):
                raise SpecError("trace.path", f"{path} line {number} is not a JSON object "
                                "(each line must be one {...} record)")
            if records == 0:
                timestamps = record.get("timestamp") is not None
            records += 1
            _check_hash_ids(record, path, number, block)
    if records == 0:
        raise SpecError("trace.path", f"{path} holds no records")
    if trace.fixed_schedule and not timestamps:
        raise SpecError("trace.fixed_schedule", f"{path} has no timestamp in its first record:"
                        " nothing to replay (remove fixed_schedule)")
    if timestamps and trace.fixed_schedule is None and workload.request_rate is not None:
        raise SpecError("request_rate", f"{path} has timestamps, which set the arrivals: drop "
                        "request_rate, or set trace.fixed_schedule: false to ignore them")
    return TraceInfo(path, records, timestamps)


def _check_hash_ids(record: dict, path: Path, number: int, block: int | None) -> None:
    """AIPerf builds a `hash_ids` prompt from len(hash_ids) blocks of `block` tokens, the last
    one partial (dataset/generator/prompt.py: `_build_token_sequence`): an input_length not
    above (len - 1) x block fails inside AIPerf after the stack has started."""
    hash_ids = record.get("hash_ids")
    length = record.get("input_length")
    if not hash_ids or block is None or not isinstance(length, int):
        return
    if not isinstance(hash_ids, list):
        raise SpecError("trace.path", f"{path} line {number}: hash_ids must be a list of "
                        "integers")
    need = (len(hash_ids) - 1) * block
    if length <= need:
        raise SpecError("trace.block_size", f"{path} line {number}: input_length {length} is "
                        f"too short for {len(hash_ids)} hash_ids of {block} tokens (needs more "
                        f"than {need}): set trace.block_size to the block size the trace was "
                        "written with (Dynamo's replay traces use 16)")


def check_server(url: str, model: str, timeout_s: float = 3.0) -> list[str]:
    """GET `url`/v1/models: the server answers and serves `model`. Returns the served names.

    Raises:
        SpecError: on `--url` (cannot reach it, or it is not an OpenAI-compatible server) or
            on `--model` (not among the served models).
    """
    import httpx

    base = url.rstrip("/").removesuffix("/v1")
    try:
        r = httpx.get(f"{base}/v1/models", timeout=timeout_s)
    except httpx.ConnectError as e:
        why = "connection refused" if "refused" in str(e).lower() else str(e) or "connect error"
        raise SpecError("--url", f"cannot reach {url} ({why}): is the server running, and "
                        "is the port right?") from None
    except httpx.TimeoutException:
        raise SpecError("--url", f"cannot reach {url} (no answer within {timeout_s:g} s)"
                        ) from None
    except httpx.HTTPError as e:
        raise SpecError("--url", f"cannot reach {url} ({e})") from None
    try:
        body = r.json()
        served = [str(m.get("id")) for m in body.get("data") or []]
    except (ValueError, AttributeError):
        served = None
    if r.status_code != 200 or served is None:
        raise SpecError("--url", f"{base}/v1/models answered HTTP {r.status_code} without a "
                        "model list: give the base URL of an OpenAI-compatible server")
    if model not in served:
        raise SpecError("--model", f"model {model!r} is not served at {url} (it serves: "
                        f"{', '.join(served) or 'nothing yet'})")
    return served
