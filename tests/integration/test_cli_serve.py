"""`dynamo-bench serve` as a user runs it: --check, foreground serving, Ctrl-C, SIGTERM, SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import alive, sigint_default, wait_gone

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "dynamo_bench.cli"]


def start_serve(spec: str, *extra: str) -> tuple[subprocess.Popen, str, list[int]]:
    """Start `dynamo-bench serve`, wait for 'serving', return (process, url, stack PIDs)."""
    proc = subprocess.Popen([*CLI, "serve", str(REPO / "serving" / spec), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=sigint_default)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("serving"):
            break
    text = "".join(lines)
    url = re.search(r"url:\s+(\S+)", text)
    pids = [int(x) for m in re.finditer(r"^\s*(?:\S+-\d+|frontend)\s+(\d+)\s", text, re.M)
            for x in m.groups()]
    if not (url and pids):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"serve did not come up:\n{text}")
    return proc, url.group(1), pids


def test_serve_check_passes(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "serve", str(REPO / "serving" / "disagg_2p1d.yaml"), "--check",
                          "--logs", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check passed: ready in" in out.stdout
    assert re.search(r"non-streaming: 16 tokens", out.stdout)
    assert re.search(r"streaming: \d+ chunks", out.stdout)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "decode-0.log", "frontend.log", "prefill-0.log", "prefill-1.log"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_everything(sig: int) -> None:
    proc, url, pids = start_serve("agg_kv.yaml")
    try:
        assert len(pids) == 3 and alive(pids) == pids
        r = httpx.post(f"{url}/chat/completions", timeout=30, json={
            "model": "Qwen3-8B", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (0, 130), out
        assert "stopped in" in out
        assert wait_gone(pids, 1.0) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_sigkill_of_dynamo_bench_takes_the_stack_down(tmp_path: Path) -> None:
    """Even when dynamo-bench itself is killed, the kernel ends its children (PDEATHSIG).
    (A SIGKILLed process cannot remove its files: keep them in the test's folder.)"""
    proc, _, pids = start_serve("disagg_1p1d.yaml", "--logs", str(tmp_path / "run"))
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert wait_gone(pids, 5.0) == []
    finally:
        for pid in alive(pids):
            os.killpg(pid, signal.SIGKILL)


def test_worker_death_while_serving_is_reported() -> None:
    proc, _, pids = start_serve("agg_kv.yaml")
    try:
        os.kill(pids[1], signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert "stack process died: agg-1 (exit -9)" in out
        assert wait_gone(pids, 1.0) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_serve_duration_ends_cleanly() -> None:
    out = subprocess.run([*CLI, "serve", str(REPO / "serving" / "agg.yaml"), "--duration", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stopped in" in out.stdout


def test_k8s_manifest_to_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "dgd.yaml"
    out = subprocess.run([*CLI, "serve", str(REPO / "serving" / "vllm_disagg.yaml"), "--k8s",
                          "--out", str(target), "--namespace", "llm"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    assert "kind: DynamoGraphDeployment" in text and "namespace: llm" in text
