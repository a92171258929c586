"""Shared pieces of every spec: strict models and errors pinned to a field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A frozen model that rejects unknown fields (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _FieldError(ValueError):
    """A validation error pinned to a sub-field of the model being validated.

    Raised from a model validator, it makes the loader report `field` (relative to that model)
    instead of the model as a whole.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def field_error(field: str, message: str) -> _FieldError:
    """An error for a model validator to raise about `field` (dotted, relative to the model)."""
    return _FieldError(field, message)
