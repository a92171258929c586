"""A deployment as a plain bash script: the commands `Stack` would run, for a person to run.

Pure: DeploymentSpec -> text. The script starts every worker in the background and the
frontend in the foreground, on one machine, with file-based discovery in a private directory
and the same loopback settings `Stack` uses; Ctrl-C (or the frontend exiting) stops the workers.
GPU workers get consecutive CUDA_VISIBLE_DEVICES ranges.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from dynamo_bench.perf.tables import TimingTables
from dynamo_bench.serving.commands import LOOPBACK_ENV, frontend_argv, worker_commands
from dynamo_bench.specs.deployment import DeploymentSpec, Role

_MODEL = "__MODEL__"
_TABLE = "__TABLES_{}__"


def launch_script(spec: DeploymentSpec, model: str, *, port: int = 8000,
                  tables: Mapping[Role, TimingTables] | None = None,
                  table_files: Mapping[Role, str] | None = None,
                  header: str = "") -> str:
    """Bash that launches `spec` with `model` (a path or Hugging Face id; `$MODEL` overrides).

    `table_files` (mocker) maps each role to a timing-table file path relative to the script.
    """
    workers = worker_commands(spec, _MODEL, python="python3", tables=tables)
    lines = ["#!/usr/bin/env bash"]
    lines += [f"# {h}" for h in header.splitlines()] if header else []
    lines += [
        f"# Launch {spec.name}: {len(workers)} worker process(es) + frontend on port "
        f"${{PORT:-{port}}}.",
        "# Environment: MODEL (model path or HF id), PORT, PYTHON (default python3).",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f"MODEL=\"${{MODEL:-{model}}}\"",
        f"PORT=\"${{PORT:-{port}}}\"",
        'PYTHON="${PYTHON:-python3}"',
        'export DYN_FILE_KV="${DYN_FILE_KV:-$(mktemp -d)}"   # file-based discovery',
        *(f"export {k}={v}" for k, v in LOOPBACK_ENV.items()),
        "export DYN_NAMESPACE=dynamo",
        "pids=()",
        'cleanup() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; }',
        "trap cleanup EXIT INT TERM",
        "",
    ]
    gpu = 0
    for i, w in enumerate(workers):
        argv = [a.replace("${KV_EVENTS_PORT}", str(20080 + i)) for a in w.argv]
        argv = ['"$PYTHON"' if a == "python3" and j == 0 else _quote(a, table_files)
                for j, a in enumerate(argv)]
        env = [f"DYN_SYSTEM_PORT={9090 + i}"]
        if w.gpus:
            env.append("CUDA_VISIBLE_DEVICES=" + ",".join(str(g) for g in range(gpu, gpu +
                                                                                  w.gpus)))
            gpu += w.gpus
        env += [f"{k}={shlex.quote(v)}" for k, v in w.env.items()]
        lines.append(f"# {w.name}")
        lines.append(f"setsid env {' '.join(env)} \\\n    {_wrap(argv)} &")
        lines.append("pids+=($!)")
    fe = frontend_argv(spec, port, python="python3")
    fe = ['"$PYTHON"' if j == 0 else ('"$PORT"' if a == str(port) and fe[j - 1] ==
                                      "--http-port" else shlex.quote(a))
          for j, a in enumerate(fe)]
    lines += ["", "# frontend (OpenAI-compatible HTTP on 127.0.0.1:$PORT; --http-host to expose)",
              f"{_wrap(fe)}"]
    return "\n".join(lines) + "\n"


def _quote(arg: str, table_files: Mapping[Role, str] | None) -> str:
    if arg == _MODEL:
        return '"$MODEL"'
    if table_files:
        for path in table_files.values():
            if arg.endswith(".npz") and arg.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]:
                return f'"$HERE/{path}"'
    return shlex.quote(arg)


def _wrap(argv: list[str], width: int = 96) -> str:
    out, line = [], ""
    for a in argv:
        if line and len(line) + len(a) + 1 > width:
            out.append(line)
            line = "    " + a
        else:
            line = f"{line} {a}" if line else a
    out.append(line)
    return " \\\n".join(out)
