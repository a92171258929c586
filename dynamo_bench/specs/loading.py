"""YAML in, typed spec out: the one place where file input becomes a validated spec.

Every failure becomes a `SpecError` whose message is one line naming the file, the field, the
bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dynamo_bench.errors import SpecError
from dynamo_bench.specs.base import _FieldError

M = TypeVar("M", bound=BaseModel)


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names accepted at `loc` (the parent of an unknown field), walking nested models."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            current = info.annotation if info else None
        else:
            args = getattr(current, "__args__", ()) or ()
            # dict[str, X] or X | None: step into the BaseModel argument
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)),
                           None)
            if current is not None and isinstance(part, str) and part in current.model_fields:
                current = current.model_fields[part].annotation
        if current is None:
            return []
    while not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = getattr(current, "__args__", ()) or ()
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields)


_PHRASES = (
    ("Input should be greater than or equal to", "must be >="),
    ("Input should be greater than", "must be >"),
    ("Input should be less than or equal to", "must be <="),
    ("Input should be less than", "must be <"),
    ("String should match pattern", "must match pattern"),
    ("String should have at least", "must have at least"),
    ("Input should be", "must be"),
)


def _plain(msg: str) -> str:
    """Pydantic's wording made shorter and uniform ("must be >= 1")."""
    for old, new in _PHRASES:
        if msg.startswith(old):
            return new + msg[len(old):]
    return msg


def describe_validation_error(model: type[BaseModel], err: ValidationError,
                              source: str | None = None) -> SpecError:
    """The first error of a pydantic `ValidationError` as a one-line `SpecError`."""
    first = err.errors(include_url=False)[0]
    # Pydantic adds "[key]" for errors in a dict key, "function-..." for wrapped validators.
    loc = tuple(p for p in first["loc"]
                if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
    field = ".".join(str(p) for p in loc)
    kind = first["type"]
    value = first.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        hint = f"allowed: {', '.join(allowed)}" if allowed else "remove it"
        message = f"unknown field ({hint})"
    elif kind == "missing":
        message = "is required but missing"
    elif isinstance(first.get("ctx", {}).get("error"), _FieldError):
        pinned = first["ctx"]["error"]
        field = ".".join([*(str(p) for p in loc), pinned.field])
        message = pinned.message
    else:
        text = _plain(first["msg"].removeprefix("Value error, "))
        # A model-level check gets the whole mapping as its input: say only what is wrong.
        message = text if isinstance(value, (dict, list)) else f"{value!r} is invalid: {text}"
    return SpecError(field, " ".join(message.split()), source)


def parse_spec(model: type[M], data: Any, source: str | None = None) -> M:
    """Validate already-loaded data as `model`, raising a one-line `SpecError` on failure."""
    if data is None:
        raise SpecError("", "the spec is empty (expected a YAML mapping of fields)", source)
    if not isinstance(data, dict):
        raise SpecError("", f"expected a mapping of fields, got {type(data).__name__}", source)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise describe_validation_error(model, err, source) from None


def read_yaml(path: str | Path) -> Any:
    """Load a YAML file, turning a missing file or a syntax error into a one-line `SpecError`."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError("", "file not found (check the path)", str(p)) from None
    except IsADirectoryError:
        raise SpecError("", "is a directory (give the YAML file)", str(p)) from None
    except OSError as err:
        raise SpecError("", f"cannot read file: {err.strerror}", str(p)) from None
    except UnicodeDecodeError:
        raise SpecError("", "is not a text file (expected YAML)", str(p)) from None
    if "\x00" in text:
        raise SpecError("", "is not a text file (expected YAML)", str(p))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise SpecError("", f"invalid YAML{where}: {problem}", str(p)) from None


def load_spec(model: type[M], path: str | Path) -> M:
    """Read `path` as YAML and validate it as `model`."""
    return parse_spec(model, read_yaml(path), str(path))
