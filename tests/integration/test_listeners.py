"""What a local stack listens on: every TCP listener of every process of the stack (children
included) is on loopback, or else named in the stack's exposure report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from dynamo_bench import Stack
from dynamo_bench.perf.timing import tables_for
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.serving.ports import free_ports
from dynamo_bench.serving.script import launch_script
from tests.helpers import alive, wait_gone


def _tree_listeners(pids: list[int]) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of each listening socket of `pids` and their children, read here."""
    out: set[tuple[int, str, int]] = set()
    for pid in pids:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            for c in proc.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((proc.pid, c.laddr.ip, c.laddr.port))
    return out


@pytest.mark.parametrize("name", ["agg_kv.yaml", "disagg_1p1d.yaml"])
def test_every_listener_of_a_mocker_stack_is_on_loopback(spec_file, name: str) -> None:
    with Stack(spec_file(name)) as stack:
        assert stack.broker_pid is not None
        pids = [p.pid for p in stack.processes()] + [stack.broker_pid]
        found = _tree_listeners(pids)
        reported = {(s.pid, s.ip, s.port) for s in stack.exposed}
        outside = {s for s in found if not s[1].startswith("127.")}
        assert outside <= reported, f"listening beyond loopback, unreported: {outside - reported}"
        # the mocker stack is fully confined: nothing to report
        assert outside == set() and stack.exposed == []
        # the stack reads the same sockets
        assert {s.port for s in stack.listeners()} == {port for _, _, port in found}
        if name == "agg_kv.yaml":
            prompt = " ".join(f"token{i}" for i in range(400))
            usage = []
            for _ in range(2):
                r = httpx.post(f"{stack.url}/v1/chat/completions", timeout=30, json={
                    "model": stack.model_name, "max_tokens": 4,
                    "messages": [{"role": "user", "content": prompt}]})
                r.raise_for_status()
                usage.append(r.json()["usage"])
            # KV events reached the router through the broker: the repeat is routed to the
            # worker that holds the prefix
            assert usage[1]["prompt_tokens_details"]["cached_tokens"] > 0
    assert alive(pids) == []


def test_launch_script_serves_on_loopback_and_sigterm_leaves_nothing_behind(
        spec_file, tmp_path: Path) -> None:
    """A generated launch.sh for a one-worker mocker deployment, run as a person would."""
    spec = spec_file("agg.yaml")
    model = resolve_model(spec.model, simulated=True, precision=spec.precision,
                          backend=spec.backend)
    here = tmp_path / "best"
    (here / "tables").mkdir(parents=True)
    tables = tables_for(spec, model)
    table_files = {}
    for role, t in tables.items():
        shutil.copy2(t.path, here / "tables" / t.path.name)
        table_files[role] = f"tables/{t.path.name}"
    script = here / "launch.sh"
    script.write_text(launch_script(spec, model, tables=tables, table_files=table_files))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_ports(1)[0]
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, start_new_session=True, env={
        **os.environ, "PORT": str(port), "PYTHON": sys.executable, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 40
        answer = None
        while answer is None and time.monotonic() < deadline:
            assert proc.poll() is None, "launch.sh exited"
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5, json={
                    "model": spec.model_name, "max_tokens": 2,
                    "messages": [{"role": "user", "content": "hello"}]})
                answer = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert answer is not None, "launch.sh did not serve within 40 s"
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) >= 3  # broker, worker, frontend
        found = _tree_listeners([proc.pid])
        assert found and all(ip.startswith("127.") for _, ip, _ in found), found
        os.kill(proc.pid, signal.SIGTERM)  # the script only, not its process group
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_gone(pids, 5) == []
    assert list(tmp.iterdir()) == []
    assert (here / "run-home").is_dir()
