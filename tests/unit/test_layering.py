"""The package's layers: what importing a module drags in, and no import cycle at load time.

Reading a study (tune/records.py) needs no tuner, the reports need neither the API nor the CLI,
and the sweep types need no search space. Across the whole package, the imports that run when
a module loads (its top level, class bodies, any `if`/`try` there; not function bodies, nor
`if TYPE_CHECKING:` blocks) form no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "dynamo_bench"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / PACKAGE


def _loaded_after(module: str) -> set[str]:
    """The dynamo_bench modules loaded by importing `module` in a fresh interpreter."""
    code = (f"import sys, {module}\n"
            f"print('\\n'.join(m for m in sys.modules if m.startswith('{PACKAGE}')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize(("module", "absent"), [
    ("dynamo_bench.report", {"dynamo_bench.api", "dynamo_bench.cli"}),
    ("dynamo_bench.tune.records", {"dynamo_bench.tune.tuner"}),
    ("dynamo_bench.tune.record", {"dynamo_bench.tune.tuner", "dynamo_bench.tune.evaluate"}),
    ("dynamo_bench.tune.sweep", {"dynamo_bench.tune.space"}),
])
def test_importing_a_module_leaves_the_layers_above_it_alone(module: str,
                                                             absent: set[str]) -> None:
    loaded = _loaded_after(module)
    assert module in loaded
    assert not loaded & absent, f"importing {module} loads {sorted(loaded & absent)}"


def test_a_typed_record_needs_no_optuna() -> None:
    code = "import sys, dynamo_bench.tune.record; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _load_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements among `body` that run when the module loads."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # runs when called
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _load_time_imports(node.body)
            found += _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                found += _load_time_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
            found += _load_time_imports(node.body)
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             modules: set[str]) -> set[str]:
    """The package modules one import statement loads (the deepest one each name names)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[:len(anchor) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    out = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports at load time."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for node in _load_time_imports(tree.body):
            edges |= _targets(node, name, path.name == "__init__.py", set(modules))
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "dynamo_bench.tune.tuner" in graph and "dynamo_bench.report.best" in graph
    assert "dynamo_bench.tune.names" in graph["dynamo_bench.tune.records"]
    assert "dynamo_bench.tune.space" in graph["dynamo_bench.tune.sweep_file"]
    # a lazy import (inside a function) is no edge
    assert "dynamo_bench.report.html" not in graph["dynamo_bench.report.files"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_level_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle at load time: " + " -> ".join(cycle or [])
