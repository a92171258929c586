"""Real stacks on this CPU machine: readiness, requests, liveness, teardown by PID."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from dynamo_bench import LaunchError, Stack, WorkerDiedError, check_stack
from dynamo_bench.specs import DeploymentSpec, parse_spec
from tests.helpers import alive, wait_gone


def chat(stack: Stack, content: str, max_tokens: int = 4) -> dict:
    r = httpx.post(f"{stack.url}/v1/chat/completions", timeout=30, json={
        "model": stack.model_name, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}]})
    r.raise_for_status()
    return r.json()


def registered(stack: Stack) -> dict[str, int]:
    """Workers registered with the frontend, per component (backend = agg/decode, prefill)."""
    body = httpx.get(f"{stack.url}/health", timeout=5).json()
    out: dict[str, set] = {}
    for inst in body["instances"]:
        if inst["endpoint"] == "generate":
            out.setdefault(inst["component"], set()).add(inst["instance_id"])
    return {k: len(v) for k, v in out.items()}


def metric(stack: Stack, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{stack.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("name", ["agg.yaml", "disagg_1p1d.yaml"])
def test_streaming_and_non_streaming_through_openai_client(spec_file, name: str) -> None:
    with Stack(spec_file(name)) as stack:
        pids = [p.pid for p in stack.processes()]
        assert alive(pids) == pids
        assert 0 < stack.ready_s < 30
        result = check_stack(stack, max_tokens=12)
        assert result.completion_tokens == 12
        assert result.stream_chunks >= 1
        assert result.text
    assert wait_gone(pids, 0.5) == []


def test_kv_router_reuses_cached_prefix(spec_file) -> None:
    with Stack(spec_file("agg_kv.yaml")) as stack:
        assert registered(stack) == {"backend": 2}
        prompt = " ".join(f"token{i}" for i in range(400))
        first = chat(stack, prompt)["usage"]
        again = chat(stack, prompt)["usage"]
        pids = [p.pid for p in stack.processes()]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = again["prompt_tokens_details"]["cached_tokens"]
    # all full KV blocks of the repeated prompt come back cached
    assert cached >= again["prompt_tokens"] - 64 and cached > 0
    assert alive(pids) == []


@pytest.mark.parametrize(("name", "prefill", "decode"), [("disagg_1p1d.yaml", 1, 1),
                                                         ("disagg_2p1d.yaml", 2, 1)])
def test_disaggregated_requests_go_through_prefill(spec_file, name: str, prefill: int,
                                                   decode: int) -> None:
    with Stack(spec_file(name)) as stack:
        assert registered(stack) == {"prefill": prefill, "backend": decode}
        before = metric(stack, "dynamo_frontend_router_admission_received_total",
                        worker_type="prefill")
        for i in range(4):
            assert chat(stack, f"request {i} " + "lorem ipsum " * 100)["usage"][
                "completion_tokens"] == 4
        after = metric(stack, "dynamo_frontend_router_admission_received_total",
                       worker_type="prefill")
        pids = [p.pid for p in stack.processes()]
    assert after - before == 4
    assert alive(pids) == []


def test_two_stacks_at_once_do_not_see_each_other(spec_file) -> None:
    with Stack(spec_file("agg_kv.yaml")) as a, Stack(spec_file("disagg_1p1d.yaml")) as b:
        assert a.port != b.port
        assert registered(a) == {"backend": 2}
        assert registered(b) == {"prefill": 1, "backend": 1}
        assert chat(a, "hello a")["usage"]["completion_tokens"] == 4
        assert chat(b, "hello b")["usage"]["completion_tokens"] == 4
        pids = [p.pid for p in a.processes()] + [p.pid for p in b.processes()]
        assert len(set(pids)) == 6
    assert alive(pids) == []


def test_killed_worker_is_reported(spec_file) -> None:
    with Stack(spec_file("agg_kv.yaml")) as stack:
        stack.ensure_alive()
        victim = next(p for p in stack.processes() if p.name == "agg-1")
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not stack.dead() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.dead() == {"agg-1": -signal.SIGKILL}
        with pytest.raises(WorkerDiedError, match=r"agg-1 \(exit -9\)"):
            stack.ensure_alive()
        pids = [p.pid for p in stack.processes()]
    assert alive(pids) == []


def test_worker_that_exits_at_startup_raises_with_its_log(spec_file) -> None:
    data = spec_file("agg.yaml").model_dump(exclude_none=True)
    data["workers"]["agg"] = {"extra_args": ["--no-such-flag"]}
    spec = parse_spec(DeploymentSpec, data)
    stack = Stack(spec)
    with pytest.raises(LaunchError) as info:
        stack.start()
    err = info.value
    assert err.process == "agg-0"
    assert err.exit_code == 2
    assert "--no-such-flag" in err.log_tail
    assert "agg-0 exited with status 2" in str(err)
    assert alive([p.pid for p in stack.processes()]) == []


def test_startup_deadline_raises_and_cleans_up(spec_file) -> None:
    stack = Stack(spec_file("disagg_1p1d.yaml"), ready_timeout_s=0.2)
    with pytest.raises(LaunchError, match=r"not ready after 0 s: \d of 2 workers registered"):
        stack.start()
    assert stack.processes()
    assert alive([p.pid for p in stack.processes()]) == []


def test_exception_in_with_block_tears_down(spec_file) -> None:
    pids: list[int] = []
    with pytest.raises(ZeroDivisionError):
        with Stack(spec_file("agg.yaml")) as stack:
            pids = [p.pid for p in stack.processes()]
            1 / 0  # noqa: B018
    assert pids and alive(pids) == []


def test_run_dir_keeps_one_log_per_process(spec_file, tmp_path) -> None:
    with Stack(spec_file("disagg_2p1d.yaml"), run_dir=tmp_path / "run") as stack:
        names = sorted(p.name for p in stack.processes())
    logs = sorted(p.stem for p in (tmp_path / "run" / "logs").glob("*.log"))
    assert logs == names == ["decode-0", "frontend", "prefill-0", "prefill-1"]
    assert all((tmp_path / "run" / "logs" / f"{n}.log").stat().st_size > 0 for n in names)
    assert (tmp_path / "run" / "discovery").is_dir()


def test_ready_waits_for_every_worker(spec_file, monkeypatch) -> None:
    """A replica that starts 3 s late holds readiness back until it registers, although the
    other replica already answers chat completions."""
    from dynamo_bench.serving import stack as stack_module

    real = stack_module.worker_commands

    def one_slow_replica(*args, **kwargs):
        cmds = real(*args, **kwargs)
        late = cmds[1].argv
        late[:] = ["sh", "-c", 'sleep 3; exec "$0" "$@"', *late]  # same PID: exec, not a child
        return cmds

    monkeypatch.setattr(stack_module, "worker_commands", one_slow_replica)
    with Stack(spec_file("agg_kv.yaml")) as stack:
        assert registered(stack) == {"backend": 2}
        assert stack.ready_s >= 3


def test_a_relative_run_folder_serves(spec_file, tmp_path, monkeypatch) -> None:
    """`--out results/x` style paths: the stack must work from a relative run folder."""
    monkeypatch.chdir(tmp_path)
    with Stack(spec_file("agg.yaml"), run_dir="runs/relative", ready_timeout_s=30) as stack:
        assert check_stack(stack).completion_tokens > 0
    assert (tmp_path / "runs" / "relative" / "logs" / "frontend.log").is_file()
