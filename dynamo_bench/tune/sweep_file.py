"""Reading a sweep file: the one boundary where a file becomes a validated `SweepSpec`.

Every mistake (unknown parameter, empty list, low > high, a budget smaller than one worker, an
unknown SLA metric, a deployment knob the backend rejects) is one `SpecError` naming the field.
The field-level rules live on the types (tune/sweep.py); the checks that need the search space
(tune/space.py: `check_space`) run here, where both are visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dynamo_bench.errors import SpecError
from dynamo_bench.specs.deployment import WorkerGroup
from dynamo_bench.specs.loading import describe_validation_error, parse_spec, read_yaml
from dynamo_bench.tune.space import check_space
from dynamo_bench.tune.sweep import SweepSpec


def parse_sweep(data: Any, source: str | None = None, base_dir: Path | None = None) -> SweepSpec:
    """Validate loaded YAML as a `SweepSpec`; a `workload:` path is read relative to `base_dir`.

    Raises `SpecError` (one line, naming the field) for anything wrong, including a space in
    which no layout fits the budget and deployment fields the backend rejects.
    """
    if isinstance(data, dict) and isinstance(data.get("workload"), str):
        wpath = Path(data["workload"]).expanduser()
        if not wpath.is_absolute() and base_dir is not None:
            wpath = base_dir / wpath
        try:
            data = {**data, "workload": read_yaml(wpath)}
        except SpecError as e:
            raise SpecError("workload", f"{wpath}: {e.message}", source) from None
    try:
        sweep = parse_spec(SweepSpec, data, source)
    except SpecError as e:
        # a SpecError raised by a validator (an SLA tier) arrives wrapped: keep its own field
        raise _unwrap(e, source) from None
    try:
        _check_worker_defaults(sweep)
        check_space(sweep)
    except SpecError as e:
        raise SpecError(e.field, e.message, source) from None
    return sweep


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (see tune/sweep.py for the format)."""
    p = Path(path)
    return parse_sweep(read_yaml(p), str(p), p.parent)


def _unwrap(e: SpecError, source: str | None) -> SpecError:
    marker = "sla."
    if e.field == "sla" or e.field.startswith(marker):
        inner = e.message
        if inner.startswith(marker) and ": " in inner:
            field, msg = inner.split(": ", 1)
            return SpecError(field, msg, source)
    return e


def _check_worker_defaults(sweep: SweepSpec) -> None:
    searched = {"replicas", "tp", "pp", "block_size", "max_num_seqs", "max_num_batched_tokens",
                "enable_prefix_caching", "enable_chunked_prefill"} & set(sweep.worker_defaults)
    if searched:
        raise SpecError(f"worker_defaults.{sorted(searched)[0]}", "is a searched knob: list it "
                        "under space instead")
    try:
        WorkerGroup.model_validate(sweep.worker_defaults)
    except ValidationError as err:
        e = describe_validation_error(WorkerGroup, err)
        raise SpecError(f"worker_defaults.{e.field}", e.message) from None
