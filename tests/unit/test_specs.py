"""Deployment specs: good specs load, bad ones give one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dynamo_bench.errors import SpecError
from dynamo_bench.specs import DeploymentSpec, load_deployment, parse_spec

REPO = Path(__file__).resolve().parents[2]
SERVING = sorted((REPO / "serving").glob("*.yaml"))

BASE = {"model": "Qwen3-8B", "backend": "mocker", "mode": "agg", "workers": {"agg": {}}}


def with_(**changes):
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


# (id, spec, the field the message must name, a word of the fix or the allowed values)
BAD = [
    ("unknown-top-field", with_(replicas=2), "replicas", "allowed"),
    ("unknown-group-field", with_(workers__agg__replica=2), "workers.agg.replica", "replicas"),
    ("negative-replicas", with_(workers__agg__replicas=-1), "workers.agg.replicas", ">= 1"),
    ("zero-tp", with_(workers__agg__tp=0), "workers.agg.tp", ">= 1"),
    ("tp-not-pow2-vllm", with_(backend="vllm", workers__agg__tp=3), "workers.agg.tp",
     "power of two"),
    ("disagg-without-decode", with_(mode="disagg", workers={"prefill": {}}),
     "workers.decode", "add one"),
    ("disagg-with-agg-group", with_(mode="disagg", workers={"prefill": {}, "decode": {},
                                                             "agg": {}}), "workers.agg", "remove"),
    ("agg-with-prefill", with_(workers={"prefill": {}}), "workers", "agg"),
    ("unknown-backend", with_(backend="tgi"), "backend", "vllm"),
    ("unknown-mode", with_(mode="hybrid"), "mode", "disagg"),
    ("unknown-role", with_(workers={"agg": {}, "encode": {}}), "workers.encode", "prefill"),
    ("unknown-router-mode", with_(router={"mode": "sticky"}), "router.mode", "round-robin"),
    ("kv-settings-without-kv", with_(router={"mode": "random", "kv": {"temperature": 0.1}}),
     "router.kv", "mode: kv"),
    ("unknown-kv-setting", with_(router={"mode": "kv", "kv": {"overlap_weight": 1}}),
     "router.kv.overlap_weight", "overlap_score_credit"),
    ("unknown-gpu", with_(gpu="h300"), "gpu", "h100_sxm"),
    ("vllm-block-size", with_(backend="vllm", workers__agg__block_size=48),
     "workers.agg.block_size", "16"),
    ("trtllm-block-size", with_(backend="trtllm", workers__agg__block_size=24),
     "workers.agg.block_size", "power of two"),
    ("batch-tokens-below-seqs", with_(workers__agg__max_num_seqs=64,
                                      workers__agg__max_num_batched_tokens=32),
     "workers.agg.max_num_batched_tokens", "max_num_seqs"),
    ("connector-wrong-backend", with_(workers__agg__kv_connector="nixl"),
     "workers.agg.kv_connector", "none"),
    ("offload-wrong-field", with_(workers__agg__kv_offload={"host_cache_gb": 8}),
     "workers.agg.kv_offload.host_cache_gb", "host_blocks"),
    ("disagg-gpu-no-connector", with_(backend="vllm", mode="disagg",
                                      workers={"prefill": {"kv_connector": "none"},
                                               "decode": {}}),
     "workers.prefill.kv_connector", "nixl"),
    ("speedup-on-gpu-backend", with_(backend="sglang", workers__agg__speedup_ratio=10),
     "workers.agg.speedup_ratio", "mocker"),
    ("wrong-type", with_(workers__agg__replicas="two"), "workers.agg.replicas", "integer"),
    ("missing-model", with_(model=...), "model", "required"),
    ("bad-name", with_(name="My Deployment"), "name", "pattern"),
    ("gpu-mem-above-1", with_(backend="vllm", workers__agg__gpu_memory_utilization=1.5),
     "workers.agg.gpu_memory_utilization", "1"),
]


@pytest.mark.parametrize(("spec", "field", "hint"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_names_the_field(spec: dict, field: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(DeploymentSpec, spec, "spec.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"spec.yaml: {field}: "), message
    assert hint in message, message
    assert info.value.field == field


@pytest.mark.parametrize("path", SERVING, ids=[p.name for p in SERVING])
def test_shipped_specs_load(path: Path) -> None:
    spec = load_deployment(str(path))
    assert spec.gpus == sum(g.replicas * g.tp * g.pp for g in spec.workers.values())


def test_gpus_are_computed_from_groups() -> None:
    spec = load_deployment(str(REPO / "serving" / "vllm_disagg.yaml"))
    assert spec.gpus == 1 * 4 + 1 * 4
    with pytest.raises(SpecError, match="gpus: unknown field"):
        parse_spec(DeploymentSpec, {**BASE, "gpus": 4})


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nworkers:\n  agg: {replicas: 1\n")
    with pytest.raises(SpecError) as info:
        load_deployment(str(bad))
    assert "invalid YAML at line" in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="empty"):
        load_deployment(str(empty))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_deployment(str(listy))


@pytest.mark.parametrize(("spec", "field"), [
    (with_(workers__agg__replicas=0), "workers.agg.replicas"),
    (with_(mode="disagg", workers={"prefill": {}}), "workers.decode"),
    (with_(model="/nonexistent/model-dir"), "model"),
    (with_(model="NotAModel-7B"), "model"),
    (with_(backend="vllm", workers__agg__tp=8, workers__agg__replicas=4), "gpus"),
], ids=["replicas-zero", "disagg-no-decode", "missing-model-dir", "unknown-model",
        "too-many-gpus"])
def test_cli_exits_2_with_one_line(tmp_path: Path, spec: dict, field: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "serve", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "DYNAMO_BENCH_GPUS": "0"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{field}:" in lines[0]
    assert "Traceback" not in proc.stderr


def test_model_dir_missing_files(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(with_(model=str(d))))
    proc = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "serve", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "model: model directory" in proc.stderr
    assert "tokenizer.json" in proc.stderr and "dynamo-bench model make" in proc.stderr
