"""Real AIPerf against real mocker stacks: do the numbers mean what they say?"""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamo_bench import Stack, load_deployment, load_point, parse_sla, target_for
from dynamo_bench.loadgen.aiperf import AIPerfError
from dynamo_bench.loadgen.bench import find_max_load, measure, sweep
from dynamo_bench.specs import DeploymentSpec, LengthSpec, PrefixSpec, WorkloadSpec, parse_spec

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "dynamo_bench.cli"]


def deployment(**group) -> DeploymentSpec:
    """A one-worker mocker deployment on the mocker's built-in timing curve, which the
    thresholds below were chosen against."""
    return parse_spec(DeploymentSpec, {"name": "t", "model": "Qwen3-8B",
                                       "timing": "mocker-default", "workers": {"agg": group}})


@pytest.fixture(scope="module")
def prefill_bound():
    """One mocker worker with a small prefill budget: TTFT grows fast with load."""
    with Stack(deployment(max_num_batched_tokens=512, max_num_seqs=64)) as stack:
        yield stack


def test_sweep_runs_on_one_stack_and_ttft_rises_with_input_length(prefill_bound, tmp_path):
    pids = [p.pid for p in prefill_bound.processes()]
    target = target_for(prefill_bound)
    short = WorkloadSpec(isl=LengthSpec(mean=300), osl=LengthSpec(mean=8), concurrency=1,
                         request_count=10)
    long = short.model_copy(update={"isl": LengthSpec(mean=4000)})
    a = sweep(target, short, [("concurrency", 1)], tmp_path / "short")[0]
    b = sweep(target, long, [("concurrency", 1)], tmp_path / "long")[0]
    assert a.metrics.errors == b.metrics.errors == 0
    assert b.metrics.ttft_ms_p50 > 3 * a.metrics.ttft_ms_p50
    assert b.metrics.isl_mean > 10 * a.metrics.isl_mean
    assert [p.pid for p in prefill_bound.processes()] == pids and not prefill_bound.dead()


def test_itl_rises_with_concurrency(prefill_bound, tmp_path):
    w = WorkloadSpec(isl=LengthSpec(mean=3000), osl=LengthSpec(mean=48), concurrency=1,
                     request_count=16)
    one, many = sweep(target_for(prefill_bound), w, [("concurrency", 1), ("concurrency", 16)],
                      tmp_path)
    assert not one.metrics.client_saturated
    assert many.metrics.itl_ms_p50 > 1.5 * one.metrics.itl_ms_p50
    assert many.metrics.server_itl_ms_mean > 1.5 * one.metrics.server_itl_ms_mean
    assert one.metrics.osl_mean == many.metrics.osl_mean == 48


def test_load_search_finds_the_sla_boundary(prefill_bound, tmp_path):
    w = WorkloadSpec(isl=LengthSpec(mean=4000), osl=LengthSpec(mean=8), concurrency=1,
                     request_count=16)
    sla = parse_sla("ttft_ms.p90<=600")
    out = find_max_load(target_for(prefill_bound), w, sla, tmp_path, start=1, limit=32)
    assert out.limited_by == "sla", [(p.load, p.feasible) for p in out.probes]
    assert out.best is not None and out.above is not None
    assert sla.feasible(out.best.result.metrics)
    assert not sla.feasible(out.above.result.metrics)
    assert out.above.load == out.best.load + 1  # nothing measured between them
    assert len(out.probes) <= 6
    assert len({p.result.run_dir for p in out.probes}) == len(out.probes)


def test_shared_prefixes_raise_the_cache_hit_rate_under_the_kv_router(spec_file, tmp_path):
    base = WorkloadSpec(isl=LengthSpec(mean=64), osl=LengthSpec(mean=8), concurrency=4,
                        request_count=32)
    shared = base.model_copy(update={"prefix": PrefixSpec(pool_size=2, length=1024)})
    with Stack(spec_file("agg_kv.yaml")) as stack:
        target = target_for(stack)
        plain = measure(target, base, tmp_path / "plain")
        rag = measure(target, shared, tmp_path / "rag")
    assert plain.metrics.prefix_cache_hit_rate < 0.3
    assert rag.metrics.prefix_cache_hit_rate > 0.7
    assert rag.requests["cached_tokens"].gt(0).mean() > 0.8


def test_saturation_flag_on_purpose_and_not_at_concurrency_1(tmp_path):
    """Speed-up 10 makes the mocker ten times faster than the load client can follow."""
    spec = parse_spec(DeploymentSpec, {"name": "fast", "model": "Qwen3-8B",
                                       "timing": "mocker-default", "router":
                                       {"mode": "kv"}, "workers": {"agg": {
                                           "replicas": 2, "speedup_ratio": 10}}})
    # Enough requests that all 96 slots stay busy for several seconds: with only a few dozen
    # the flood drains before the client queues up and the verdict depends on the machine.
    w = WorkloadSpec(isl=LengthSpec(mean=256), osl=LengthSpec(mean=64), concurrency=1,
                     request_count=192)
    with Stack(spec) as stack:
        calm, flooded = sweep(target_for(stack), w, [("concurrency", 1), ("concurrency", 96)],
                              tmp_path)
    assert calm.metrics.client_saturated is False
    assert flooded.metrics.client_saturated is True
    assert "client TTFT mean" in flooded.metrics.saturation_reason
    assert not flooded.metrics.usable
    # speed-up results are labelled and carry the measured non-engine overhead
    assert calm.metrics.time_base == "simulated" and calm.metrics.speedup_ratio == 10
    assert calm.metrics.overhead_ms is not None and 0 < calm.metrics.overhead_ms < 50
    saved = json.loads((calm.run_dir / "metrics.json").read_text())["metrics"]
    assert saved["time_base"] == "simulated" and saved["client_saturated"] is False


def test_bench_cli_on_disagg_writes_summary(tmp_path):
    out = tmp_path / "bench"
    # a relative --out, as in the README (the AIPerf runs and the stack must not nest it)
    proc = subprocess.run([*CLI, "bench", str(REPO / "serving" / "disagg_1p1d.yaml"), "-w",
                           str(REPO / "sweeps" / "workloads" / "tiny.yaml"), "--concurrency",
                           "1,2", "--out", "bench"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "2"]
    # requests scale with concurrency as in tune: max(request_count 12, 8 per slot)
    assert [r["request_count"] for r in rows] == ["12", "16"]
    assert [r["requests"] for r in rows] == ["12", "16"]
    assert all(r["valid"] == "True" for r in rows)
    for col in ("request_rate", "ttft_ms_p50", "ttft_ms_p90", "itl_ms_p50", "itl_ms_p90",
                "e2e_ms_p90", "output_tok_s", "output_tok_s_per_gpu", "output_tok_s_per_user",
                "client_saturated"):
        assert col in rows[0]
    assert all(float(r["osl_mean"]) == 16 and r["errors"] == "0" for r in rows)
    assert float(rows[0]["output_tok_s_per_gpu"]) == pytest.approx(
        float(rows[0]["output_tok_s"]) / 2)
    run_dir = tmp_path / rows[1]["run_dir"]
    point = load_point(run_dir)  # reloadable without rerunning
    assert point.metrics.concurrency == 2 and len(point.requests) == 16
    # the run folder's deployment.yaml is a spec that loads again
    assert load_deployment(run_dir / "deployment.yaml").name == "disagg-1p1d"
    assert "c=2" in proc.stdout


def test_bench_cli_against_a_running_server(spec_file, tmp_path):
    with Stack(spec_file("agg.yaml")) as stack:
        proc = subprocess.run([*CLI, "bench", "--url", f"{stack.url}/v1", "--model",
                               stack.model_name, "-w",
                               str(REPO / "sweeps" / "workloads" / "tiny.yaml"),
                               "--concurrency", "2", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = next(csv.DictReader((tmp_path / "summary.csv").open()))
    assert row["client_saturated"] == "False"  # the frontend's /metrics was found and compared
    assert float(row["server_ttft_ms_mean"]) > 0


def test_image_inputs_are_in_the_generated_requests(prefill_bound, tmp_path):
    w = WorkloadSpec(isl=LengthSpec(mean=64), osl=LengthSpec(mean=8), concurrency=2,
                     request_count=4, images={"per_request": 2, "width": 64, "height": 48})
    with pytest.raises(AIPerfError):  # the mocker serves a text-only model
        measure(target_for(prefill_bound), w, tmp_path)
    payloads = [p for s in json.loads((tmp_path / "aiperf" / "inputs.json").read_text())["data"]
                for p in s["payloads"]]
    assert len(payloads) == 4
    for p in payloads:
        images = [c for c in p["messages"][0]["content"] if c["type"] == "image_url"]
        assert len(images) == 2
        png = base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (64, 48)


def test_trace_file_replay(prefill_bound, tmp_path):
    trace = tmp_path / "trace.jsonl"
    lengths = [300, 350, 400, 450, 500, 550]
    trace.write_text("".join(json.dumps({"timestamp": 100 * i, "input_length": n,
                                         "output_length": 8}) + "\n"
                             for i, n in enumerate(lengths)))
    w = WorkloadSpec(osl=LengthSpec(mean=8), concurrency=4,
                     trace={"path": str(trace), "fixed_schedule": True})
    point = measure(target_for(prefill_bound), w, tmp_path / "run")
    assert point.metrics.requests == 6 and point.metrics.errors == 0
    isl = sorted(point.requests["isl"])
    template = isl[0] - lengths[0]  # the chat template adds the same few tokens to each
    assert 0 <= template < 32 and isl == [n + template for n in lengths]


def test_trace_with_timestamps_and_hash_ids_runs_through_aiperf(prefill_bound, tmp_path):
    """A trace as Dynamo's replay writes them: timestamps and 16-token hash_ids blocks. The
    timestamps are replayed without asking (AIPerf's default; no pacing rate is added, which
    AIPerf refuses with a fixed schedule) and the block size reaches AIPerf."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 150 * i, "input_length": 40,
                                         "output_length": 8, "hash_ids": [0, 1, 2 + i]}) + "\n"
                             for i in range(5)))
    w = WorkloadSpec(osl=LengthSpec(mean=8), concurrency=2,
                     trace={"path": str(trace), "block_size": 16})
    point = measure(target_for(prefill_bound), w, tmp_path / "run")
    assert point.metrics.requests == 5 and point.metrics.errors == 0
    argv = (tmp_path / "run" / "aiperf.log").read_text()
    starts = sorted(point.requests["start_ns"])
    assert (starts[-1] - starts[0]) / 1e6 > 0.8 * 600  # the 600 ms schedule was followed
    assert sorted(point.requests["isl"])[0] >= 40 and argv


def test_bench_cli_find_max_load(tmp_path):
    out = tmp_path / "search"
    proc = subprocess.run([*CLI, "bench", str(REPO / "serving" / "agg.yaml"), "-w",
                           str(REPO / "sweeps" / "workloads" / "tiny.yaml"), "--sla",
                           "ttft_ms.p90<=100000", "--find-max-load", "--max-load", "4",
                           "--out", str(out)], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    # the search starts at the workload's concurrency (2) and doubles up to the limit (or
    # stops where this busy machine's load client saturates)
    assert rows[0]["concurrency"] == "2" and {r["concurrency"] for r in rows} <= {"2", "3", "4"}
    assert all(int(r["request_count"]) == max(12, 8 * int(r["concurrency"])) for r in rows)
    found = json.loads((out / "search.json").read_text())
    assert found["limited_by"] in ("limit", "client"), found
    best = next(r for r in rows if r["run_dir"] == found["best"])
    assert f"max load meeting ttft_ms.p90<=100000: c={best['concurrency']}" in \
        " ".join(proc.stdout.split())


def _stack_process(discovery: Path, module: str) -> int | None:
    """The pid of a process of the stack whose discovery store is `discovery`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes()
            env = (Path("/proc") / pid / "environ").read_bytes()
        except OSError:
            continue
        if module.encode() in cmd and f"DYN_FILE_KV={discovery}".encode() in env.split(b"\0"):
            return int(pid)
    return None


def test_bench_stops_at_once_when_a_worker_dies(tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text("name: two\nmodel: Qwen3-8B\ntiming: mocker-default\n"
                    "workers: {agg: {replicas: 2}}\n")
    work = tmp_path / "w.yaml"
    work.write_text("isl: {mean: 128}\nosl: {mean: 64}\nconcurrency: 1\nrequest_count: 8\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "bench", str(spec), "-w", str(work), "--concurrency", "1,4",
                             "--requests-per-slot", "60", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        records = out / "concurrency_0004" / "aiperf" / "profile_export.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if records.is_file() and len(records.read_text().splitlines()) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        pid = _stack_process((out / "stack" / "discovery").resolve(), "dynamo.mocker")
        assert pid is not None
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stdout + stderr
    assert took < 25, took  # not the rest of a 240-request run
    assert "stack process died during c=4" in stderr and "last lines of" in stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert [r["valid"] for r in rows] == ["True", "False"]
    assert "died" in rows[1]["invalid_reason"] and rows[0]["invalid_reason"] == ""
    assert int(rows[1]["requests"]) < 240
    assert load_point(rows[1]["run_dir"]).valid is False
    assert "INVALID" in stdout
