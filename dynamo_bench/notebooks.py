"""Run the notebooks in `notebooks/` with papermill, the way `dynamo-bench notebook run` does.

Each notebook declares its parameters in a cell tagged `parameters`. `run_notebook` checks the
names given against that cell (an unknown one is a `SpecError`), executes the notebook in a
fresh kernel with the working directory set to `cwd`, and saves the executed copy next to the
study it produced (its `out` parameter, or the study it explored). If a cell fails, the copy
is still saved, and a mistake the user can fix surfaces as the same one-line error the CLI
prints for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamo_bench.errors import DynamoBenchError, SpecError, UserError

#: Exceptions raised inside a notebook that are the user's to fix (CLI exit status 2).
USER_ERRORS = {"UserError", "SpecError", "ResourceError", "DoesNotFitError"}


class NotebookError(DynamoBenchError):
    """A notebook cell raised. `executed` is the saved copy with the traceback in it."""

    def __init__(self, message: str, executed: Path) -> None:
        self.executed = executed
        super().__init__(message)


class NotebookUserError(UserError):
    """A notebook stopped on a mistake the user can fix; the message is the one-line error."""

    def __init__(self, message: str, executed: Path) -> None:
        self.executed = executed
        super().__init__(message)


def notebook_dir() -> Path:
    """`./notebooks` if it exists, else the one beside the package (a source checkout)."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "notebooks"


def list_notebooks() -> list[str]:
    return sorted(p.stem for p in notebook_dir().glob("*.ipynb"))


def notebook_parameters(name: str) -> dict[str, Any]:
    """The parameters the notebook declares, with their defaults (as source text)."""
    import papermill

    info = papermill.inspect_notebook(str(_path(name)))
    return {k: v.get("default") for k, v in info.items()}


def _path(name: str) -> Path:
    path = notebook_dir() / f"{name.removesuffix('.ipynb')}.ipynb"
    if not path.is_file():
        raise SpecError("NAME", f"no notebook {name!r} (choose from: "
                        f"{', '.join(list_notebooks())})")
    return path


def _output_folder(name: str, params: dict[str, Any], declared: dict[str, Any],
                   cwd: Path) -> Path:
    for key in ("out", "study_folder"):
        value = params.get(key)
        if value is None and declared.get(key) not in (None, "None"):
            value = _literal(declared[key])
        if value:
            return cwd / str(value)
    return cwd / "results" / name


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def run_notebook(name: str, parameters: dict[str, Any] | None = None,
                 cwd: str | Path | None = None, output: str | Path | None = None) -> Path:
    """Execute notebook `name` with `parameters`; returns the executed copy's path.

    Raises:
        SpecError: unknown notebook or parameter.
        NotebookUserError: a cell raised a user error (its one-line message; copy saved).
        NotebookError: a cell raised anything else (copy saved).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = dict(parameters or {})
    src = _path(name)
    declared = notebook_parameters(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise SpecError(f"-p {unknown[0]}", f"notebook {src.stem} has no such parameter "
                        f"(it takes: {', '.join(declared)})")
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    dest = Path(output) if output is not None else \
        _output_folder(src.stem, params, declared, workdir) / f"{src.stem}.ipynb"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(src), str(dest), parameters=params, cwd=str(workdir),
                                   kernel_name="python3", progress_bar=False,
                                   log_output=False, report_mode=False,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except PapermillExecutionError as e:
        message = str(e.evalue).strip().splitlines()[0] if str(e.evalue).strip() else e.ename
        if e.ename in USER_ERRORS:
            raise NotebookUserError(message, dest) from None
        raise NotebookError(f"{src.stem}: cell {e.exec_count} raised {e.ename}: {message} "
                            f"(executed copy: {dest})", dest) from None
    return dest
