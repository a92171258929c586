"""Sweep files: validation with one-line errors, layouts in budget, conditional parameters."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest

from dynamo_bench.cli import main
from dynamo_bench.errors import SpecError
from dynamo_bench.tune.space import (
    agg_layouts,
    deployment_for,
    disagg_layouts,
    enumerate_params,
    knobs_from_params,
    parse_disagg_label,
    parse_layout,
    space_size,
)
from dynamo_bench.tune.sweep_file import load_sweep, parse_sweep

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "t", "deployment": {"model": "Qwen3-8B", "gpu": "h100_sxm"},
    "budget": {"gpus": 4, "gpus_per_worker": 2},
    "space": {"mode": ["agg", "disagg"], "tp": [1, 2], "block_size": [16, 64],
              "max_num_seqs": [32, 128], "router": {"mode": ["kv", "round-robin"]}},
    "workload": {"isl": {"mean": 512}, "osl": {"mean": 64}, "concurrency": 1},
    "sla": {"fast": "ttft_ms.p90<=300,itl_ms.p90<=15"},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path,value,field,words", [
    ("space.beam_width", [1, 2], "space.beam_width", "unknown field"),
    ("space.tp", [], "space.tp", "empty list"),
    ("space.max_num_seqs", {"low": 64, "high": 8}, "space.max_num_seqs.high", "must be >= low"),
    ("budget", {"gpus": 1}, "space.mode", "disagg has no layout"),
    ("sla", {"fast": "tpot_ms.p90<=15"}, "sla.fast", "unknown metric"),
    ("sla", {"fast": "ttft_ms<=15"}, "sla.fast", "needs a statistic"),
    ("sla", {}, "sla", "at least 1"),
    ("space.mode", ["agg", "mixed"], "space.mode.1", "must be 'agg' or 'disagg'"),
    ("deployment.workers", {"agg": {}}, "deployment", "is searched"),
    ("deployment.gpu", "tpu_v5", "deployment.gpu", "unknown GPU type"),
    ("budget.trials", 0, "budget.trials", "must be >= 1"),
    ("search", {"sampler": "cmaes"}, "search.sampler", "tpe"),
    ("workload", KeyError, "workload", "required"),
])
def test_bad_sweeps_name_the_field(path: str, value: Any, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_sweep(with_(path, value), "s.yaml")
    assert err.value.field == field, str(err.value)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_budget_smaller_than_one_worker() -> None:
    data = with_("budget", {"gpus": 1})
    data["space"]["tp"] = [2, 4]
    with pytest.raises(SpecError) as err:
        parse_sweep(data)
    assert err.value.field == "budget.gpus"
    assert "smaller than one agg worker (the smallest needs 2 GPUs" in str(err.value)
    data["budget"] = {"gpus": 8, "gpus_per_worker": 1}
    with pytest.raises(SpecError) as err:
        parse_sweep(data)
    assert err.value.field == "budget.gpus_per_worker"


def test_backend_rules_apply_to_the_space() -> None:
    data = with_("deployment.backend", "vllm")
    data["space"]["block_size"] = [16, 48]
    with pytest.raises(SpecError) as err:
        parse_sweep(data)
    assert err.value.field == "space.block_size" and "48" in str(err.value)
    data = with_("space.mode", ["disagg"])
    data["budget"] = {"gpus": 1}
    with pytest.raises(SpecError) as err:
        parse_sweep(data)
    assert err.value.field == "budget.gpus" and "prefill + decode" in str(err.value)


def test_cli_exits_2_with_one_line_for_a_malformed_sweep(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndeployment: {model: Qwen3-8B}\nbudget: {gpus: 0}\n"
                   "workload: {isl: {mean: 10}, osl: {mean: 10}, concurrency: 1}\n"
                   "sla: {a: ttft_ms.p90<=1}\n")
    with pytest.raises(SystemExit) as code:
        main(["tune", str(bad), "--out", str(tmp_path / "out")])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "budget.gpus" in err and str(bad) in err
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_workload_path_is_relative_to_the_sweep_file() -> None:
    sweep = load_sweep(REPO / "sweeps" / "quickstart.yaml")
    assert sweep.workload.isl is not None and sweep.workload.isl.mean == 512
    missing = with_("workload", "nope.yaml")
    with pytest.raises(SpecError) as err:
        parse_sweep(missing, "s.yaml", REPO / "sweeps")
    assert err.value.field == "workload" and "not found" in str(err.value)


@pytest.mark.parametrize("name", ["quickstart", "llama70b-h100", "qwen3-32b-h200",
                                  "qwen3-moe-h200", "bench/samplers"])
def test_shipped_sweeps_load(name: str) -> None:
    sweep = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    assert agg_layouts(sweep) or disagg_layouts(sweep)


def test_layouts_cover_the_budget_exactly() -> None:
    sweep = parse_sweep(BASE)
    aggs = agg_layouts(sweep)
    assert {(x.tp, x.replicas) for x in aggs} == {(1, 1), (1, 2), (1, 3), (1, 4), (2, 1),
                                                  (2, 2)}
    pairs = disagg_layouts(sweep)
    expected = [(p, d) for p in aggs for d in aggs if p.gpus + d.gpus <= 4]
    assert sorted(pairs) == sorted(expected)
    for p, d in pairs:
        assert parse_disagg_label(f"P {p.label} + D {d.label}") == (p, d)
    assert parse_layout("3x tp2 pp2").gpus == 12


def test_min_gpus_and_replica_limit() -> None:
    data = with_("budget", {"gpus": 8, "min_gpus": 4, "max_replicas": 2})
    data["space"]["tp"] = [1, 2, 4]
    sweep = parse_sweep(data)
    assert all(4 <= x.gpus <= 8 and x.replicas <= 2 for x in agg_layouts(sweep))


def test_every_point_of_the_space_is_a_valid_deployment_in_budget() -> None:
    sweep = parse_sweep(BASE)
    points = list(enumerate_params(sweep))
    # agg: 6 layouts x 2 block sizes x 2 seqs x 2 routers; disagg: 11 pairs x 2 x 2 x 2 x 2
    assert len(points) == space_size(sweep) == 6 * 8 + 11 * 16
    seen = set()
    for p in points:
        spec = deployment_for(sweep, knobs_from_params(sweep, p))
        assert spec.gpus <= 4 and all(g.tp * g.pp <= 2 for g in spec.workers.values())
        seen.add(spec.model_dump_json())
        # conditional: decode/prefill knobs only in disagg, agg knobs only in agg
        roles = {k.split(".")[0] for k in p if "." in k} - {"router"}
        assert roles == ({"agg"} if p["mode"] == "agg" else {"disagg", "prefill", "decode"})
    assert len(seen) == len(points)


def test_router_weights_are_searched_only_with_the_kv_router() -> None:
    data = copy.deepcopy(BASE)
    data["space"]["router"] = {"mode": ["kv", "round-robin"],
                               "overlap_score_credit": {"low": 0.0, "high": 2.0}}
    sweep = parse_sweep(data)
    assert space_size(sweep) is None  # a range: not finite
    kv = knobs_from_params(sweep, {"mode": "agg", "agg.layout": "1x tp1", "block_size": 16,
                                   "agg.max_num_seqs": 32, "router.mode": "kv",
                                   "router.overlap_score_credit": 0.5})
    assert deployment_for(sweep, kv).router.kv.overlap_score_credit == 0.5
    rr = knobs_from_params(sweep, {"mode": "agg", "agg.layout": "1x tp1", "block_size": 16,
                                   "agg.max_num_seqs": 32, "router.mode": "round-robin"})
    assert "router.overlap_score_credit" not in rr
    assert deployment_for(sweep, rr).router.kv is None


def test_role_overrides() -> None:
    data = copy.deepcopy(BASE)
    data["space"]["decode"] = {"max_num_seqs": [256]}
    data["space"]["prefill"] = {"tp": [2]}
    sweep = parse_sweep(data)
    for p, d in disagg_layouts(sweep):
        assert p.tp == 2
    params = next(p for p in enumerate_params(sweep) if p["mode"] == "disagg")
    spec = deployment_for(sweep, knobs_from_params(sweep, params))
    assert spec.workers["decode"].max_num_seqs == 256
    assert "decode.max_num_seqs" not in params  # one value: fixed, not a parameter
    assert list(itertools.islice(enumerate_params(sweep), 1))
