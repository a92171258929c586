"""Generated command lines, parsed by the real tools' own argument parsers.

The mocker and the frontend parse completely here. The GPU workers' Dynamo-owned arguments are
parsed by Dynamo's own parser groups (the same ones `python -m dynamo.vllm|sglang|trtllm` builds);
TensorRT-LLM's whole `parse_args` runs with only `tensorrt_llm.llmapi.BuildConfig` stubbed (it is
used for default values). vLLM's and SGLang's engine parsers need the engines themselves: those
flags are checked in tests/slow/test_vllm_parser.py where vllm can be installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest

from dynamo_bench.serving.commands import frontend_argv, worker_commands
from dynamo_bench.specs import DeploymentSpec, load_deployment, parse_spec

REPO = Path(__file__).resolve().parents[2]


def spec_of(name: str) -> DeploymentSpec:
    return load_deployment(str(REPO / "serving" / name))


def mutate(name: str, **group_changes) -> DeploymentSpec:
    data = spec_of(name).model_dump(exclude_none=True)
    for group in data["workers"].values():
        group.update(group_changes)
    return parse_spec(DeploymentSpec, data)


def test_frontend_args_parse_with_frontend_parser() -> None:
    from dynamo.frontend.frontend_args import FrontendArgGroup, FrontendConfig

    spec = parse_spec(DeploymentSpec, {
        "model": "Qwen3-8B", "workers": {"agg": {"replicas": 2}},
        "router": {"mode": "kv", "kv": {"overlap_score_credit": 0.5, "temperature": 0.25,
                                        "use_kv_events": False, "replica_sync": True,
                                        "queue_threshold": 2.0}}})
    parser = argparse.ArgumentParser()
    FrontendArgGroup().add_arguments(parser)
    args, unknown = parser.parse_known_args(frontend_argv(spec, 8123)[3:])
    assert unknown == []
    FrontendConfig.from_cli_args(args).validate()
    assert (args.http_host, args.http_port, args.router_mode) == ("127.0.0.1", 8123, "kv")
    assert (args.discovery_backend, args.request_plane) == ("file", "tcp")
    assert args.overlap_score_credit == 0.5
    assert args.router_temperature == 0.25
    assert args.use_kv_events is False
    assert args.router_replica_sync is True
    assert args.router_queue_threshold == 2.0


@pytest.mark.parametrize("name", ["agg.yaml", "agg_kv.yaml", "disagg_1p1d.yaml",
                                  "disagg_2p1d.yaml"])
def test_mocker_args_parse_with_mocker_parser(name: str) -> None:
    from dynamo.mocker.args import parse_args

    spec = spec_of(name)
    cmds = worker_commands(spec, "/models/x")
    assert len(cmds) == sum(g.replicas for g in spec.workers.values())
    for cmd in cmds:
        assert cmd.argv[1:3] == ["-m", "dynamo.mocker"]
        args = parse_args(cmd.argv[3:])
        group = spec.workers[cmd.role]
        assert args.model_path == "/models/x"
        assert args.model_name == spec.model_name
        assert args.block_size == group.block_size
        if group.max_num_seqs:
            assert args.max_num_seqs == group.max_num_seqs
        if group.max_num_batched_tokens:
            assert args.max_num_batched_tokens == group.max_num_batched_tokens
        assert str(getattr(args.disaggregation_mode, "value", args.disaggregation_mode) or "agg") \
            == cmd.role


def test_mocker_offload_and_speedup_flags() -> None:
    from dynamo.mocker.args import parse_args

    spec = parse_spec(DeploymentSpec, {"model": "Qwen3-8B", "workers": {"agg": {
        "num_gpu_blocks": 1000, "speedup_ratio": 10, "enable_chunked_prefill": False,
        "kv_offload": {"host_blocks": 4000, "offload_bandwidth_gb_s": 25}}}})
    args = parse_args(worker_commands(spec, "/m")[0].argv[3:])
    assert args.num_gpu_blocks == 1000
    assert args.speedup_ratio == 10
    assert args.enable_chunked_prefill is False
    assert args.num_host_blocks == 4000
    assert args.host_offload_d2h_bandwidth_gbps == 25
    assert args.host_offload_h2d_bandwidth_gbps == 25


def _dynamo_worker_parse(backend: str, argv: list[str]):
    from dynamo.common.configuration.groups.router_args import (
        parse_worker_router_config,
        register_worker_router_help,
    )
    from dynamo.common.configuration.groups.runtime_args import (
        DynamoRuntimeArgGroup,
        DynamoRuntimeConfig,
    )

    if backend == "vllm":
        from dynamo.vllm.backend_args import DynamoVllmArgGroup as Group
        from dynamo.vllm.backend_args import DynamoVllmConfig as Config
    else:
        from dynamo.sglang.backend_args import DynamoSGLangArgGroup as Group
        from dynamo.sglang.backend_args import DynamoSGLangConfig as Config
    parser = argparse.ArgumentParser(allow_abbrev=False)
    DynamoRuntimeArgGroup().add_arguments(parser)
    Group().add_arguments(parser)
    register_worker_router_help(parser)
    args, rest = parser.parse_known_args(argv)

    class Combined(DynamoRuntimeConfig, Config):
        pass

    Combined.from_cli_args(args)
    _, engine_argv = parse_worker_router_config(rest)
    return args, engine_argv


def _pairs(argv: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i]] = argv[i + 1]
            i += 2
        else:
            out[argv[i]] = None
            i += 1
    return out


@pytest.mark.parametrize("name", ["vllm_agg.yaml", "vllm_disagg.yaml"])
def test_vllm_worker_args(name: str) -> None:
    spec = spec_of(name)
    for cmd in worker_commands(spec, "Qwen/Qwen3-32B"):
        group = spec.workers[cmd.role]
        args, engine = _dynamo_worker_parse("vllm", cmd.argv[3:])
        assert (args.discovery_backend, args.request_plane) == ("file", "tcp")
        mode = getattr(args.disaggregation_mode, "value", args.disaggregation_mode)
        assert (mode or "agg") == cmd.role
        flags = _pairs(engine)
        assert flags["--model"] == "Qwen/Qwen3-32B"
        assert flags["--tensor-parallel-size"] == str(group.tp)
        assert flags["--pipeline-parallel-size"] == str(group.pp)
        assert flags["--block-size"] == str(group.block_size)
        if cmd.role == "agg":
            assert flags["--max-num-seqs"] == str(group.max_num_seqs)
            assert "--kv-events-config" in flags  # KV router needs the engine's events
        else:
            transfer = json.loads(flags["--kv-transfer-config"] or "")
            assert transfer["kv_connector"] == "NixlConnector"
            assert transfer["kv_role"] == {"prefill": "kv_producer",
                                           "decode": "kv_consumer"}[cmd.role]
        assert cmd.gpus == group.tp * group.pp


def test_fp8_flags() -> None:
    for backend, kv in (("vllm", "fp8"), ("sglang", "fp8_e4m3")):
        spec = parse_spec(DeploymentSpec, {"model": "Qwen3-8B", "backend": backend,
                                           "precision": "fp8", "workers": {"agg": {}}})
        _, engine = _dynamo_worker_parse(backend, worker_commands(spec, "m")[0].argv[3:])
        flags = _pairs(engine)
        assert flags["--quantization"] == "fp8" and flags["--kv-cache-dtype"] == kv


def test_vllm_kvbm_offload_uses_kvbm_connector() -> None:
    spec = parse_spec(DeploymentSpec, {"model": "Qwen3-8B", "backend": "vllm", "workers": {
        "agg": {"kv_offload": {"host_cache_gb": 64}}}})
    _, engine = _dynamo_worker_parse("vllm", worker_commands(spec, "m")[0].argv[3:])
    transfer = json.loads(_pairs(engine)["--kv-transfer-config"] or "")
    assert transfer["kv_connector"] == "DynamoConnector"
    assert transfer["kv_connector_module_path"] == "kvbm.vllm_integration.connector"


@pytest.mark.parametrize("name", ["sglang_agg.yaml", "sglang_disagg.yaml"])
def test_sglang_worker_args(name: str) -> None:
    spec = spec_of(name)
    for cmd in worker_commands(spec, "Qwen/Qwen3-8B"):
        group = spec.workers[cmd.role]
        args, engine = _dynamo_worker_parse("sglang", cmd.argv[3:])
        assert (args.discovery_backend, args.request_plane) == ("file", "tcp")
        flags = _pairs(engine)
        assert flags["--model-path"] == "Qwen/Qwen3-8B"
        assert flags["--tensor-parallel-size"] == str(group.tp)
        assert flags["--page-size"] == str(group.block_size)
        if cmd.role != "agg":
            assert flags["--disaggregation-mode"] == cmd.role
            assert flags["--disaggregation-transfer-backend"] == "nixl"
        else:
            assert "--enable-hierarchical-cache" in flags
            assert flags["--hicache-ratio"] == "2"
            assert flags["--max-running-requests"] == str(group.max_num_seqs)


@pytest.fixture
def trtllm_parse(monkeypatch: pytest.MonkeyPatch):
    class _Field:
        def __init__(self, default):
            self.default = default

    class BuildConfig:  # only the defaults dynamo.trtllm reads from TensorRT-LLM
        model_fields = {"max_batch_size": _Field(2048), "max_num_tokens": _Field(8192),
                        "max_seq_len": _Field(None), "max_beam_width": _Field(1)}

    trt = types.ModuleType("tensorrt_llm")
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.BuildConfig = BuildConfig
    trt.llmapi = llmapi
    monkeypatch.setitem(sys.modules, "tensorrt_llm", trt)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    for mod in [m for m in sys.modules if m.startswith("dynamo.trtllm")]:
        monkeypatch.delitem(sys.modules, mod)
    from dynamo.trtllm.args import parse_args

    return parse_args


@pytest.mark.parametrize("name", ["trtllm_agg.yaml", "trtllm_disagg.yaml"])
def test_trtllm_worker_args_parse_with_dynamo_trtllm(name: str, trtllm_parse) -> None:
    spec = spec_of(name)
    for cmd in worker_commands(spec, "meta-llama/Llama-3.1-70B-Instruct"):
        group = spec.workers[cmd.role]
        cfg = trtllm_parse(cmd.argv[3:])
        assert cfg.model == "meta-llama/Llama-3.1-70B-Instruct"
        assert cfg.tensor_parallel_size == group.tp
        assert cfg.pipeline_parallel_size == group.pp
        assert cfg.kv_block_size == group.block_size
        mode = getattr(cfg.disaggregation_mode, "value", cfg.disaggregation_mode)
        assert str(mode) == {"agg": "prefill_and_decode"}.get(cmd.role, cmd.role)
        engine = json.loads(cfg.override_engine_args)
        assert engine["kv_cache_config"]["tokens_per_block"] == group.block_size
        assert engine["kv_cache_config"]["enable_block_reuse"] is True
        if cmd.role == "agg":
            assert cfg.max_batch_size == group.max_num_seqs
            assert cfg.use_kv_events is True
        else:
            assert engine["cache_transceiver_config"]["backend"] == "NIXL"
        if cmd.role == "prefill":
            assert cfg.max_num_tokens == group.max_num_batched_tokens
        if spec.precision == "fp8":
            assert engine["kv_cache_config"]["dtype"] == "fp8"


def test_trtllm_rejects_an_unknown_flag(trtllm_parse) -> None:
    """The stubbed parser is strict: a wrong flag name would fail these tests."""
    with pytest.raises(SystemExit):
        trtllm_parse(["--model-path", "m", "--max-num-seqs", "8"])


def test_kv_event_endpoints_local_and_cluster() -> None:
    """vLLM binds only wildcard or ipc:// endpoints (else it connects), so a local vLLM stack
    gets a Unix socket; SGLang keeps the wildcard; Kubernetes manifests keep tcp://*:20080."""
    from dynamo_bench.serving.commands import (
        KV_EVENTS_PLACEHOLDER,
        local_kv_events_endpoint,
        localize_kv_events,
    )
    from dynamo_bench.serving.k8s import dgd_manifest

    assert local_kv_events_endpoint("vllm", 20080, "/run/tmp/kv-0") == "ipc:///run/tmp/kv-0"
    assert local_kv_events_endpoint("sglang", 20081, "/x") == "tcp://*:20081"
    for name in ("vllm_agg.yaml", "sglang_agg.yaml"):
        spec = spec_of(name)
        argv = worker_commands(spec, "m")[0].argv
        config = argv[argv.index("--kv-events-config") + 1]
        assert json.loads(config)["endpoint"] == KV_EVENTS_PLACEHOLDER
        local = localize_kv_events(argv, 'ipc:///odd "dir"/kv')
        cfg = json.loads(local[argv.index("--kv-events-config") + 1])
        assert cfg["endpoint"] == 'ipc:///odd "dir"/kv'
        args = [a for c in dgd_manifest(spec)["spec"]["components"]
                for a in c["podTemplate"]["spec"]["containers"][0]["args"]]
        assert any('"endpoint":"tcp://*:20080"' in a for a in args)


def test_zmq_broker_binds_loopback_and_reports_its_url(tmp_path: Path) -> None:
    import subprocess
    import time

    from dynamo_bench.serving.commands import zmq_broker_argv

    url_file = tmp_path / "url"
    proc = subprocess.Popen(zmq_broker_argv(str(url_file)))
    try:
        deadline = time.monotonic() + 20
        while not url_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = url_file.read_text()
        assert url.startswith("xsub=tcp://127.0.0.1:") and " , xpub=tcp://127.0.0.1:" in url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
