"""Generated vLLM and SGLang worker commands, parsed by the engines' own parsers (opt-in:
`pytest --run-slow`; the first run builds two parser venvs, about 2 minutes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dynamo_bench.serving.commands import worker_commands
from dynamo_bench.specs import DeploymentSpec, load_deployment, parse_spec
from tests.slow.engine_parsers import parse
from tests.unit.test_commands import _dynamo_worker_parse

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def engine_args(spec: DeploymentSpec, backend: str) -> list[tuple[str, list[str]]]:
    """(role, the arguments Dynamo's worker hands to the engine parser) per worker."""
    out = []
    for cmd in worker_commands(spec, "Qwen/Qwen3-8B"):
        _, engine = _dynamo_worker_parse(backend, cmd.argv[3:])
        out.append((cmd.role, engine))
    return out


@pytest.mark.parametrize("name", ["vllm_agg.yaml", "vllm_disagg.yaml"])
def test_vllm_parses_the_worker_args(name: str) -> None:
    spec = load_deployment(str(REPO / "serving" / name))
    for role, argv in engine_args(spec, "vllm"):
        g = spec.workers[role]
        ns = parse("vllm", argv)
        assert ns["model"] == "Qwen/Qwen3-8B"
        assert ns["tensor_parallel_size"] == g.tp and ns["pipeline_parallel_size"] == g.pp
        assert ns["block_size"] == g.block_size
        assert ns["enable_prefix_caching"] is True
        if g.max_num_seqs:
            assert ns["max_num_seqs"] == g.max_num_seqs
        if g.max_num_batched_tokens:
            assert ns["max_num_batched_tokens"] == g.max_num_batched_tokens
        if role != "agg":
            assert ns["kv_transfer_config"]["kv_connector"] == "NixlConnector"
            assert ns["kv_transfer_config"]["kv_role"] == {"prefill": "kv_producer",
                                                           "decode": "kv_consumer"}[role]
        else:
            assert ns["kv_events_config"]["enable_kv_cache_events"] is True


def test_vllm_offload_and_knobs() -> None:
    spec = parse_spec(DeploymentSpec, {"model": "Qwen3-8B", "backend": "vllm", "workers": {
        "agg": {"max_model_len": 8192, "gpu_memory_utilization": 0.8, "num_gpu_blocks": 4096,
                "enable_chunked_prefill": False, "enable_prefix_caching": False,
                "kv_offload": {"host_cache_gb": 32}}}})
    ns = parse("vllm", engine_args(spec, "vllm")[0][1])
    assert ns["max_model_len"] == 8192 and ns["gpu_memory_utilization"] == 0.8
    assert ns["num_gpu_blocks_override"] == 4096
    assert ns["enable_chunked_prefill"] is False and ns["enable_prefix_caching"] is False
    assert ns["kv_transfer_config"]["kv_connector"] == "DynamoConnector"


@pytest.mark.parametrize("name", ["sglang_agg.yaml", "sglang_disagg.yaml"])
def test_sglang_parses_the_worker_args(name: str) -> None:
    spec = load_deployment(str(REPO / "serving" / name))
    for role, argv in engine_args(spec, "sglang"):
        g = spec.workers[role]
        ns = parse("sglang", argv)
        assert ns["model_path"] == "Qwen/Qwen3-8B"
        assert ns["tp_size"] == g.tp and ns["pp_size"] == g.pp
        assert ns["page_size"] == g.block_size
        if role == "agg":
            assert ns["max_running_requests"] == g.max_num_seqs
            assert ns["enable_hierarchical_cache"] is True and ns["hicache_ratio"] == 2.0
        else:
            assert ns["disaggregation_mode"] == role
            assert ns["disaggregation_transfer_backend"] == "nixl"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_fp8_flags_parse(engine: str) -> None:
    spec = parse_spec(DeploymentSpec, {"model": "Qwen3-8B", "backend": engine,
                                       "precision": "fp8", "workers": {"agg": {}}})
    ns = parse(engine, engine_args(spec, engine)[0][1])
    assert ns["quantization"] == "fp8"
    assert ns["kv_cache_dtype"] in ("fp8", "fp8_e4m3")


def test_engine_parsers_reject_a_wrong_flag() -> None:
    """A misspelt flag fails the real parsers, so the checks above can fail."""
    for engine in ("vllm", "sglang"):
        with pytest.raises(subprocess.CalledProcessError):
            parse(engine, ["--model-path", "m", "--max-num-sequences", "4"])
