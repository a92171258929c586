"""The replay probe store: the same configuration scores the same in every run."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import parse_sla
from dynamo_bench.tune.evaluate import ReplayEvaluator, median_run
from dynamo_bench.tune.probes import ProbeStore
from dynamo_bench.tune.space import deployment_for, knobs_from_params
from dynamo_bench.tune.sweep_file import load_sweep

SWEEP = load_sweep("sweeps/bench/samplers.yaml")
KV_AGG = {"mode": "agg", "agg.layout": "4x tp2", "enable_prefix_caching": True,
          "agg.max_num_seqs": 64, "agg.max_num_batched_tokens": 8192, "router.mode": "kv"}


def test_evaluators_sharing_a_store_score_a_kv_routed_configuration_the_same(
        tmp_path: Path) -> None:
    os.environ.setdefault("DYN_LOG", "error")
    spec = deployment_for(SWEEP, knobs_from_params(SWEEP, KV_AGG))
    sla = SWEEP.slas()["interactive"]
    store = ProbeStore(tmp_path / "probes.db")
    first = ReplayEvaluator(SWEEP.workload, SWEEP.load, store=store).evaluate(spec, sla, tmp_path)
    again = ReplayEvaluator(SWEEP.workload, SWEEP.load,
                            store=ProbeStore(tmp_path / "probes.db")).evaluate(spec, sla, tmp_path)
    assert first.status == "complete"
    assert again.points == first.points and again.best == first.best
    rows = sqlite3.connect(tmp_path / "probes.db").execute("SELECT COUNT(*) FROM probes")
    assert rows.fetchone()[0] == len(first.points)


def test_the_first_answer_stored_stays(tmp_path: Path) -> None:
    store = ProbeStore(tmp_path / "p.db")
    key = ProbeStore.key("deployment", {"concurrency": 4}, None)
    assert store.get(key) is None
    store.put(key, Metrics(source="replay", ttft_ms_p90=10.0))
    store.put(key, Metrics(source="replay", ttft_ms_p90=99.0))
    assert store.get(key).ttft_ms_p90 == 10.0
    assert ProbeStore.key("deployment", {"concurrency": 5}, None) != key


def test_the_median_run_decides_by_the_worst_slack() -> None:
    sla = parse_sla("ttft_ms.p90<=100,itl_ms.p90<=10")
    runs = [Metrics(source="replay", ttft_ms_p90=t, itl_ms_p90=i)
            for t, i in ((90, 11), (99, 9), (120, 9))]  # worst slacks 0.1, -0.01, 0.2
    assert median_run(sla, runs).ttft_ms_p90 == 90  # the middle one: infeasible
    assert not sla.feasible(median_run(sla, runs))
