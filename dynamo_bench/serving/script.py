"""A deployment as a plain bash script: the commands `Stack` would run, for a person to run.

Pure: DeploymentSpec -> text. The script runs every process of the stack in its own process
group, on one machine, with the same loopback settings `Stack` uses: a loopback event-plane
broker (Dynamo's direct-mode ZMQ publishers bind 0.0.0.0), file-based discovery in a temporary
folder, and HOME (where Dynamo keeps its model-card cache) in a folder of the run. SIGINT,
SIGTERM, any process of the stack exiting, or the script exiting stop every process group it
started and remove its temporary folder. GPU workers get consecutive CUDA_VISIBLE_DEVICES
ranges. Every value written into it is shell-quoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from dynamo_bench.perf.tables import TimingTables
from dynamo_bench.serving.commands import (
    LOOPBACK_ENV,
    ZMQ_BROKER_CODE,
    frontend_argv,
    local_kv_events_endpoint,
    localize_kv_events,
    worker_commands,
)
from dynamo_bench.specs.deployment import DeploymentSpec, Role

_MODEL = "__MODEL__"
_RUN_TMP = "__RUN_TMP__"  # stands for "$RUN_TMP" inside an argument

#: SIGTERM first, SIGKILL what is left after this many seconds.
GRACE_S = 10

_PREAMBLE = """\
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL=${MODEL:-__MODEL_DEFAULT__}
PORT=${PORT:-__PORT_DEFAULT__}
PYTHON=${PYTHON:-python3}
RUN_HOME=${RUN_HOME:-"$HERE/run-home"}
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/dynamo-launch.XXXXXX")"
pids=()

stop_all() {
    trap - EXIT
    trap '' INT TERM
    local p left i
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for ((i = 0; i < __GRACE_TICKS__; i++)); do
        left=0
        for p in "${pids[@]}"; do
            if kill -0 -- "-$p" 2>/dev/null; then left=1; fi
        done
        if ((left == 0)); then break; fi
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf -- "$RUN_TMP"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p -- "$RUN_HOME" "$RUN_TMP/discovery"
export PYTHONUSERBASE="${PYTHONUSERBASE:-${HOME:-}/.local}"   # keep the user's site-packages
export HF_HOME="${HF_HOME:-${HOME:-}/.cache/huggingface}"     # and their model cache and token
export HOME="$RUN_HOME" TMPDIR="$RUN_TMP"
export DYN_FILE_KV="$RUN_TMP/discovery"   # file-based discovery
__LOOPBACK__
export DYN_NAMESPACE=dynamo

# loopback event-plane broker: every process publishes and subscribes through it
setsid "$PYTHON" -c __BROKER_CODE__ "$RUN_TMP/zmq-broker-url" &
pids+=("$!")
for ((i = 0; i < 300; i++)); do
    if [[ -s "$RUN_TMP/zmq-broker-url" ]]; then break; fi
    kill -0 "${pids[0]}" 2>/dev/null || { echo "event-plane broker failed" >&2; exit 1; }
    sleep 0.1
done
DYN_ZMQ_BROKER_URL="$(cat -- "$RUN_TMP/zmq-broker-url")"
export DYN_ZMQ_BROKER_URL
"""


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
        "# Environment: MODEL (model path or HF id), PORT, PYTHON (default python3),",
        "#   RUN_HOME (HOME of the launched processes, where Dynamo keeps its caches;",
        "#   default: run-home next to this script), TMPDIR (where its temporary folder goes).",
        "# Ctrl-C, SIGTERM, or any process exiting stops every process it started.",
    ]
    preamble = (_PREAMBLE.replace("__MODEL_DEFAULT__", _default(model))
                .replace("__PORT_DEFAULT__", shlex.quote(str(port)))
                .replace("__GRACE_TICKS__", str(GRACE_S * 10))
                .replace("__BROKER_CODE__", shlex.quote(ZMQ_BROKER_CODE))
                .replace("__LOOPBACK__", "\n".join(f"export {k}={shlex.quote(v)}"
                                                  for k, v in LOOPBACK_ENV.items())))
    lines += preamble.splitlines()
    gpu = 0
    for i, w in enumerate(workers):
        endpoint = local_kv_events_endpoint(spec.backend, 20080 + i,
                                            f"{_RUN_TMP}/kv-events-{i}")
        argv = localize_kv_events(w.argv, endpoint)
        argv = ['"$PYTHON"' if a == "python3" and j == 0 else _quote(a, table_files)
                for j, a in enumerate(argv)]
        env = [f"DYN_SYSTEM_PORT={9090 + i}"]
        if w.gpus:
            env.append("CUDA_VISIBLE_DEVICES=" + ",".join(str(g) for g in range(gpu, gpu +
                                                                                  w.gpus)))
            gpu += w.gpus
        env += [f"{k}={shlex.quote(v)}" for k, v in w.env.items()]
        lines += ["", f"# {w.name}", f"setsid env {' '.join(env)} \\\n    {_wrap(argv)} &",
                  'pids+=("$!")']
    fe = frontend_argv(spec, port, python="python3")
    fe = ['"$PYTHON"' if j == 0 else ('"$PORT"' if a == str(port) and fe[j - 1] ==
                                      "--http-port" else shlex.quote(a))
          for j, a in enumerate(fe)]
    lines += ["", "# frontend (OpenAI-compatible HTTP on 127.0.0.1:$PORT; --http-host to expose)",
              f"setsid {_wrap(fe)} &",
              'pids+=("$!")',
              "",
              "# until a signal arrives or any process of the stack exits",
              "wait -n"]
    return "\n".join(lines) + "\n"


def _default(value: str) -> str:
    """`value` as the word of `${VAR:-word}`: double-quoted, nothing in it expands."""
    for c in '\\$`"':
        value = value.replace(c, "\\" + c)
    return f'"{value}"'


def _quote(arg: str, table_files: Mapping[Role, str] | None) -> str:
    if arg == _MODEL:
        return '"$MODEL"'
    if table_files:
        for path in table_files.values():
            if arg.endswith(".npz") and arg.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]:
                return f'"$HERE"/{shlex.quote(path)}'
    if _RUN_TMP in arg:
        return '"$RUN_TMP"'.join(shlex.quote(part) if part else "" for part in
                                 arg.split(_RUN_TMP))
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
