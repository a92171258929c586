"""The offline replay evaluator (in-process Dynamo replay, no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_bench.loadgen.search import Probe, search_max_load
from dynamo_bench.loadgen.steady import steady_window
from dynamo_bench.perf.timing import DoesNotFitError
from dynamo_bench.replay import replay
from dynamo_bench.specs import (
    DeploymentSpec,
    LengthSpec,
    PrefixSpec,
    WorkloadSpec,
    load_deployment,
    parse_sla,
    parse_spec,
)

REPO = Path(__file__).resolve().parents[2]


def workload(**kw) -> WorkloadSpec:
    base = {"isl": LengthSpec(mean=1024), "osl": LengthSpec(mean=128), "concurrency": 8,
            "request_count": 400}
    return WorkloadSpec(**{**base, **kw})


def spec(**kw) -> DeploymentSpec:
    return parse_spec(DeploymentSpec, {"model": "Llama-3.1-70B", "gpu": "h100_sxm", **kw})


def test_replay_returns_the_same_metrics_type() -> None:
    m, req = replay(load_deployment(str(REPO / "serving" / "agg_kv.yaml")), workload())
    assert m.source == "replay" and m.time_base == "simulated"
    assert m.requests == 400 == len(req) and m.errors == 0
    assert m.osl_mean == 128 and m.isl_mean == 1024
    assert 0 < m.ttft_ms_p50 <= m.ttft_ms_p90 <= m.ttft_ms_p99
    assert 0 < m.itl_ms_p50 < m.e2e_ms_p50
    assert m.output_tok_s_per_gpu == pytest.approx(m.output_tok_s / 2)
    inside = req[steady_window(req, 8).mask]
    assert m.window_requests == len(inside) and m.steady_state
    assert m.output_tok_s_per_user == pytest.approx((1000 / inside["itl_ms"]).mean())


def test_tp_trade_off_for_a_70b_model_on_8_gpus() -> None:
    """On 8 GPUs: TP8 x 1 answers each request faster than TP4 x 2, but less than twice as fast
    for twice the GPUs per replica (communication), and with half the replicas."""
    tp4 = spec(workers={"agg": {"tp": 4, "replicas": 2}})
    tp8 = spec(workers={"agg": {"tp": 8, "replicas": 1}})
    assert tp4.gpus == tp8.gpus == 8
    one4, _ = replay(tp4, workload(concurrency=1, request_count=60))
    one8, _ = replay(tp8, workload(concurrency=1, request_count=60))
    assert one8.itl_ms_p50 < one4.itl_ms_p50 and one8.ttft_ms_p50 < one4.ttft_ms_p50
    assert one4.itl_ms_p50 / one8.itl_ms_p50 < 2
    assert one4.ttft_ms_p50 / one8.ttft_ms_p50 < 2


def test_disagg_more_prefill_workers_cut_ttft_for_long_prompts() -> None:
    w = workload(isl=LengthSpec(mean=8000), osl=LengthSpec(mean=64), concurrency=16)
    one, _ = replay(spec(mode="disagg", workers={"prefill": {"tp": 4}, "decode": {"tp": 4}}), w)
    two, _ = replay(spec(mode="disagg", workers={"prefill": {"tp": 4, "replicas": 2},
                                                 "decode": {"tp": 4}}), w)
    assert two.ttft_ms_p50 < 0.8 * one.ttft_ms_p50


def test_kv_router_reuses_shared_prefixes() -> None:
    w = workload(prefix=PrefixSpec(pool_size=4, length=2000), isl=LengthSpec(mean=100))
    kv, _ = replay(spec(workers={"agg": {"tp": 4, "replicas": 2}}, router={"mode": "kv"}), w)
    plain, _ = replay(spec(workers={"agg": {"tp": 4, "replicas": 2}}), workload())
    assert kv.prefix_cache_hit_rate > 0.8 and plain.prefix_cache_hit_rate < 0.05


def test_gpu_backends_replay_on_their_model_tables() -> None:
    m, _ = replay(load_deployment(str(REPO / "serving" / "vllm_disagg.yaml")), workload())
    assert m.requests == 400 and m.gpus == 8


def test_replay_rejects_what_does_not_fit() -> None:
    with pytest.raises(DoesNotFitError):
        replay(spec(workers={"agg": {"tp": 1}}), workload())


def test_load_search_runs_on_replay() -> None:
    s = spec(workers={"agg": {"tp": 4}})
    sla = parse_sla("ttft_ms.p90<=1000,itl_ms.p90<=40")

    def evaluate(c: float) -> Probe:
        m, _ = replay(s, workload(concurrency=int(c), request_count=max(200, 8 * int(c))),
                      sla=sla)
        return Probe(c, sla.feasible(m), m.usable, m)

    out = search_max_load(evaluate, start=1, limit=512)
    assert out.limited_by == "sla" and out.best is not None and out.above is not None
    assert sla.feasible(out.best.result) and not sla.feasible(out.above.result)
    assert out.above.load == out.best.load + 1


def test_replay_draws_no_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    """Dynamo's replay draws a bar per step on a terminal's stderr; dynamo-bench hides it."""
    import os
    import pty
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    script = ("import sys\n"
              "from dynamo_bench.specs import load_deployment, load_workload\n"
              "from dynamo_bench.replay import replay\n"
              f"m, _ = replay(load_deployment({str(repo / 'serving/agg.yaml')!r}), "
              f"load_workload({str(repo / 'sweeps/workloads/chat.yaml')!r}))\n"
              "print('done', m.ttft_ms_p50, file=sys.stderr)\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=follower,
                            stdout=subprocess.DEVNULL, cwd=tmp_path)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "done" in text, text
    assert "offline replay" not in text, "the replay drew its progress bars"
