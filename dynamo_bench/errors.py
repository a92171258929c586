"""The error hierarchy: every error dynamo-bench raises on purpose derives from `DynamoBenchError`.

`UserError` and its subclasses are mistakes a user can fix (bad YAML, an unknown field, missing
model files, more GPUs than the machine has). The CLI prints them as one line and exits with
status 2. Everything else that goes wrong at run time (a process that dies while starting, a
deadline that passes) is a `DynamoBenchError` the caller may record and carry on from.
"""

from __future__ import annotations


class DynamoBenchError(Exception):
    """Root of every error raised on purpose by dynamo-bench."""


class UserError(DynamoBenchError):
    """Input a user can fix. `str(err)` is one line that names what is wrong and the fix."""


class SpecError(UserError):
    """A spec (YAML file or Python object) is invalid.

    Attributes:
        field: dotted path of the offending field (`workers.agg.replicas`), or "" for the whole spec.
        source: the file the spec came from, if any.
    """

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{message}")


class ResourceError(UserError):
    """The machine cannot provide what a spec asks for (GPUs, ports, model files)."""


class LaunchError(DynamoBenchError):
    """A process of a stack exited or a deadline passed while the stack was starting.

    Attributes:
        process: name of the process (`frontend`, `decode-0`, ...), or "" for the stack as a whole.
        exit_code: the exit status if the process has exited, else None.
        log_tail: the last lines of that process's log.
    """

    def __init__(self, message: str, process: str = "", exit_code: int | None = None,
                 log_tail: str = "") -> None:
        self.process = process
        self.exit_code = exit_code
        self.log_tail = log_tail
        super().__init__(message)

    def __str__(self) -> str:
        text = self.args[0]
        if self.log_tail:
            text += "\n--- last lines of the log ---\n" + self.log_tail
        return text
