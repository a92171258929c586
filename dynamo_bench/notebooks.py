"""Run the notebooks in `notebooks/` with papermill, the way `dynamo-bench notebook run` does.

Each notebook declares its parameters in a cell tagged `parameters`. `run_notebook` checks the
names given against that cell (an unknown one is a `SpecError`), executes the notebook in a
fresh kernel with the working directory set to `cwd`, and saves the executed copy next to the
study it produced (its `out` parameter, or the study it explored). If a cell fails, the copy
is still saved, and a mistake the user can fix surfaces as the same one-line error the CLI
prints for it.
"""

from __future__ import annotations

import ast
import json
import sys
import time
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
    """The parameters the notebook declares, in order, with their defaults: the value of a
    literal (`8`, `"a=b"`, `{"chat": "ttft_ms.p90<=500"}`, `None`), else the expression's
    source text. Read from the `parameters` cell with `ast` (papermill's own inspector drops
    any assignment whose text holds a second `=`)."""
    return parameters_from_source(_parameters_source(_path(name)))


def parameters_from_source(source: str) -> dict[str, Any]:
    """`name = value` (or `name: type = value`) assignments at the top level of `source`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise SpecError("parameters", f"the parameters cell does not parse (line {e.lineno}: "
                        f"{e.msg})") from None
    params: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        text = ast.get_source_segment(source, value)
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            default = text
        for target in targets:
            if isinstance(target, ast.Name):
                params[target.id] = default
    return params


def _parameters_source(path: Path) -> str:
    cells = json.loads(path.read_text()).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "code" and \
                "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else src
    return ""


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
        if value is None and isinstance(declared.get(key), str):
            value = declared[key]
        if value:
            return cwd / str(value)
    return cwd / "results" / name


class _Progress:
    """One line per code cell on stderr (`cell 3/9 ...`), for runs not on a terminal."""

    def __init__(self, name: str, cells: int) -> None:
        self.name = name
        self.cells = cells
        self.done = 0
        self.t0 = time.monotonic()

    def __call__(self, cell: Any) -> None:
        if cell.get("cell_type") != "code":
            return
        self.done += 1
        source = "".join(cell.get("source") or "").strip().splitlines()
        first = next((line for line in source if not line.startswith("#")), "")[:60]
        print(f"notebook {self.name}: cell {self.done}/{self.cells} "
              f"({time.monotonic() - self.t0:.0f} s) {first}", file=sys.stderr, flush=True)


def _line_engine(progress: _Progress) -> str:
    """A papermill engine that reports each cell's start to `progress`; returns its name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class LineEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):  # type: ignore[no-untyped-def]
                progress(cell)
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("dynamo-bench-lines", LineEngine)
    return "dynamo-bench-lines"


def run_notebook(name: str, parameters: dict[str, Any] | None = None,
                 cwd: str | Path | None = None, output: str | Path | None = None,
                 progress: bool | None = None) -> Path:
    """Execute notebook `name` with `parameters`; returns the executed copy's path.

    `progress`: papermill's progress bar on stderr when it is a terminal, else one line per
    cell (None, the default); False for none.

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
    tty = sys.stderr.isatty()
    bar = progress is not False and tty
    engine = None
    if progress is not False and not tty:
        cells = json.loads(src.read_text()).get("cells", [])
        # papermill injects one code cell of parameters when any are given
        code = sum(c.get("cell_type") == "code" for c in cells) + (1 if params else 0)
        engine = _line_engine(_Progress(src.stem, code))
    # papermill's own inspector warns about every parameter whose default it cannot parse
    # (any `=` in it) and calls them unknown: the names were checked above
    import logging

    quiet = logging.getLogger("papermill")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        papermill.execute_notebook(str(src), str(dest), parameters=params, cwd=str(workdir),
                                   kernel_name="python3", progress_bar=bar, engine_name=engine,
                                   log_output=False, report_mode=False,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except PapermillExecutionError as e:
        message = str(e.evalue).strip().splitlines()[0] if str(e.evalue).strip() else e.ename
        if e.ename in USER_ERRORS:
            raise NotebookUserError(message, dest) from None
        raise NotebookError(f"{src.stem}: cell {e.exec_count} raised {e.ename}: {message} "
                            f"(executed copy: {dest})", dest) from None
    finally:
        quiet.setLevel(level)
    return dest
