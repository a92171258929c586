"""The performance model's physics, memory fit boundaries (checked by hand), and tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynamo_bench.api import predict as api_predict
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import memory_fit
from dynamo_bench.perf.models import CATALOGUE
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms
from dynamo_bench.perf.providers import (
    AIConfiguratorProvider,
    RooflineProvider,
    WorkerQuery,
    chain_for,
    tables_from_chain,
)
from dynamo_bench.perf.tables import NPZ_KEYS
from dynamo_bench.perf.timing import DoesNotFitError, tables_for
from dynamo_bench.serving.commands import worker_commands
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.specs import DeploymentSpec, parse_spec


def arch(name: str) -> ModelArch:
    return ModelArch.from_config(CATALOGUE[name].config, name)


def hw(gpu: str = "h100_sxm", **kw) -> Hardware:
    return Hardware(GPUS[gpu], **kw)


L70, L8 = arch("Llama-3.1-70B"), arch("Llama-3.1-8B")


def test_parameter_counts_match_the_published_sizes() -> None:
    assert L8.params / 1e9 == pytest.approx(8.03, abs=0.01)
    assert L70.params / 1e9 == pytest.approx(70.55, abs=0.01)
    moe = arch("Qwen3-30B-A3B")
    assert moe.params / 1e9 == pytest.approx(30.5, abs=0.1)
    assert moe.active_params / 1e9 == pytest.approx(3.3, abs=0.1)
    mixtral = arch("Mixtral-8x7B")
    assert mixtral.params / 1e9 == pytest.approx(46.7, abs=0.1)
    # KV per token: 2 x 80 layers x 8 KV heads x 128 x 2 bytes = 327,680 bytes
    assert L70.kv_bytes_per_token() == 327_680


def test_ttft_rises_with_input_length() -> None:
    times = [prefill_ms(L70, hw(tp=4), n) for n in (16, 128, 1024, 4096, 16384, 65536)]
    assert all(b > a for a, b in zip(times, times[1:]))
    # long prompts are compute-bound and grow faster than linearly (attention)
    assert times[-1] / times[-2] > 4


def test_itl_rises_with_batch_and_context() -> None:
    h = hw(tp=4)
    by_batch = [decode_step_ms(L70, h, b, 2048) for b in (1, 8, 32, 128, 256)]
    by_ctx = [decode_step_ms(L70, h, 16, c) for c in (256, 2048, 8192, 32768)]
    assert all(b > a for a, b in zip(by_batch, by_batch[1:]))
    assert all(b > a for a, b in zip(by_ctx, by_ctx[1:]))


def test_more_tp_is_faster_with_diminishing_returns() -> None:
    for step in (lambda h: decode_step_ms(L70, h, 8, 2048),
                 lambda h: prefill_ms(L70, h, 2048)):
        t = {tp: step(hw(tp=tp)) for tp in (2, 4, 8)}
        assert t[8] < t[4] < t[2]
        assert t[2] / t[4] > t[4] / t[8] > 1  # each doubling gains less
        assert t[2] * 2 < t[4] * 4 < t[8] * 8  # GPU-time per step grows with TP


def test_fp8_halves_weight_bytes_and_speeds_decode() -> None:
    bf16 = memory_fit(L70, hw(tp=4))
    fp8 = memory_fit(L70, hw(tp=4, precision="fp8"))
    assert fp8.weights_gib == pytest.approx(bf16.weights_gib / 2)
    assert fp8.kv_bytes_per_token == pytest.approx(bf16.kv_bytes_per_token / 2)
    # fewer bytes per step; how much faster depends on the engine's fp8 kernels (fitted)
    assert decode_step_ms(L70, hw(tp=4, precision="fp8"), 1, 1024) < \
        0.9 * decode_step_ms(L70, hw(tp=4), 1, 1024)


@pytest.mark.parametrize(("model", "gpu", "tp", "pp", "precision", "fits"), [
    # usable = driver-reported memory x 0.9: H100 81,559 MiB -> 71.7 GiB, H200 143,771 MiB
    # -> 126.4 GiB. 70.55B x 2 B = 131.4 GiB of weights
    ("Llama-3.1-70B", "h100_sxm", 1, 1, "bf16", False),
    # TP2: 65.7 GiB/GPU of weights leaves ~2.8 GiB of KV (AIConfigurator: ~24k tokens)
    ("Llama-3.1-70B", "h100_sxm", 2, 1, "bf16", True),
    ("Llama-3.1-70B", "h100_sxm", 4, 1, "bf16", True),
    # fp8 on one H100 (TensorRT-LLM publishes this layout): 65.7 GiB of weights, ~15k tokens
    ("Llama-3.1-70B", "h100_sxm", 1, 1, "fp8", True),
    ("Llama-3.1-70B", "h200_sxm", 1, 1, "bf16", False),
    ("Llama-3.1-70B", "h200_sxm", 1, 1, "fp8", True),
    # 405B bf16 = 756 GiB: /8 = 94.5 GiB > 71.7 on H100, < 126.4 on H200
    ("Llama-3.1-405B", "h100_sxm", 8, 1, "bf16", False),
    ("Llama-3.1-405B", "h200_sxm", 8, 1, "bf16", True),
    ("Llama-3.1-405B", "h100_sxm", 8, 2, "bf16", True),
    # 8B (15 GiB) on an L40S (46,068 MiB -> 40.5 GiB usable)
    ("Llama-3.1-8B", "l40s", 1, 1, "bf16", True),
    # 32B bf16 (61 GiB) on one A100 80GB (72 GiB usable)
    ("Qwen3-32B", "a100_80gb", 1, 1, "bf16", True),
    # ... but not on one L40S; TP4 puts 15.3 GiB of weights on each
    ("Qwen3-32B", "l40s", 1, 1, "bf16", False),
    ("Qwen3-32B", "l40s", 4, 1, "bf16", True),
])
def test_memory_fit_boundaries(model, gpu, tp, pp, precision, fits) -> None:
    fit = memory_fit(arch(model), hw(gpu, tp=tp, pp=pp, precision=precision))
    assert fit.fits is fits, fit.reason
    assert fit.reason.startswith("fits" if fits else "does not fit")
    if fits:
        assert fit.num_gpu_blocks * 64 == fit.kv_tokens >= 4096


def test_memory_is_binary_gigabytes() -> None:
    """The layouts that only just fit: their KV room depends on reading 80 GB as 80 GiB."""
    assert GPUS["h100_sxm"].memory_bytes == 81_559 * 2**20
    tp2 = memory_fit(L70, hw(tp=2))
    assert 15_000 < tp2.kv_tokens < 26_000, tp2.reason
    assert "GiB" in tp2.reason and tp2.usable_gib == pytest.approx(71.7, abs=0.05)
    fp8 = memory_fit(L70, hw(precision="fp8"))
    assert 12_000 < fp8.kv_tokens < 20_000, fp8.reason


def test_kv_capacity_by_hand() -> None:
    """Llama-3.1-8B, 1 x H100, block 64: (81,559 MiB x 0.9 - 16.06e9 B - reserve) / (64 x
    131072 B)."""
    fit = memory_fit(L8, hw())
    usable = 81_559 * 2**20 * 0.9
    expected = int((usable - L8.params * 2 - fit.reserve_gib * 2**30) // (64 * 131072))
    assert fit.num_gpu_blocks == expected
    assert 6500 < fit.num_gpu_blocks < 7500


def _query(h: Hardware, a: ModelArch = L70, model: str = "Llama-3.1-70B") -> WorkerQuery:
    fit = memory_fit(a, h)
    return WorkerQuery(model, a, h, kv_tokens=fit.kv_tokens, max_context=32768)


def test_tables_are_complete_cached_and_traceable(tmp_path: Path) -> None:
    chain = [RooflineProvider()]
    tables = tables_from_chain(_query(hw(tp=4)), chain, num_gpu_blocks=100, block_size=64,
                               cache_dir=tmp_path)
    data = tables.load()
    assert set(data) == set(NPZ_KEYS)
    assert data["decode_itl"].shape == (len(data["decode_active_kv_tokens"]),
                                        len(data["decode_context_length"]))
    assert np.all(np.diff(data["prefill_ttft_ms"]) > 0)
    assert tables.num_gpu_blocks == 100
    assert tables.provenance["provider"] == "roofline"
    assert tables.provenance["calibration_key"] == "hopper/bf16/vllm"
    assert (tables.provenance["gpu"], tables.provenance["tp"]) == ("h100_sxm", 4)
    again = tables_from_chain(_query(hw(tp=4)), chain, num_gpu_blocks=100, block_size=64,
                              cache_dir=tmp_path)
    assert again.path == tables.path
    other = tables_from_chain(_query(hw(tp=8)), chain, num_gpu_blocks=100, block_size=64,
                              cache_dir=tmp_path)
    assert other.path != tables.path
    trt = tables_from_chain(_query(hw(tp=4, backend="trtllm")), chain, num_gpu_blocks=100,
                            block_size=64, cache_dir=tmp_path)
    assert trt.path != tables.path and trt.provenance["engine"] == "trtllm"


def test_the_chain_takes_aiconfigurator_where_it_covers_and_says_why_not(tmp_path) -> None:
    covered = tables_from_chain(_query(hw(tp=4)), chain_for("auto"), num_gpu_blocks=1,
                                block_size=64, cache_dir=tmp_path)
    assert covered.provenance["provider"] == "aiconfigurator"
    assert covered.provenance["database"].startswith("h100_sxm/vllm ")
    # A100 has no fp8 tensor cores: AIConfigurator has no data, the roofline answers
    a100 = tables_from_chain(_query(hw("a100_80gb", tp=4, precision="fp8")), chain_for("auto"),
                             num_gpu_blocks=1, block_size=64, cache_dir=tmp_path)
    assert a100.provenance["provider"] == "roofline"
    steps = {c["provider"]: c for c in a100.provenance["chain"]}
    assert "measured" in steps["measured"]["skipped"]
    assert "a100_80gb" in steps["aiconfigurator"]["skipped"]


@pytest.mark.parametrize(("model", "gpu", "engine", "tp", "precision"), [
    ("Qwen3-30B-A3B", "h100_sxm", "vllm", 2, "bf16"),      # MoE: expert sharding passed
    ("Qwen3-235B-A22B", "h200_sxm", "trtllm", 8, "fp8"),
    ("Llama-3.1-70B", "a100_80gb", "vllm", 4, "bf16"),     # AIConfigurator's a100_sxm
    ("Llama-2-70B", "h100_sxm", "trtllm", 4, "bf16"),      # not bundled with AIConfigurator
])
def test_aiconfigurator_covers_moe_a100_and_each_engine(model, gpu, engine, tp,
                                                       precision) -> None:
    q = _query(hw(gpu, tp=tp, precision=precision, backend=engine), arch(model), model)
    provider = AIConfiguratorProvider()
    assert provider.cover(q) is None
    assert provider.provenance(q)["database"].startswith(f"{gpu}/{engine} ")


def test_each_engine_is_timed_with_its_own_database() -> None:
    from dynamo_bench.perf.aic import aic_predict

    vllm = aic_predict("Llama-3.1-70B", "h100_sxm", "vllm", tp=4, isl=2048, batch=32)
    trt = aic_predict("Llama-3.1-70B", "h100_sxm", "trtllm", tp=4, isl=2048, batch=32)
    assert vllm != trt


def _spec(**kw) -> DeploymentSpec:
    return parse_spec(DeploymentSpec, {"model": "Llama-3.1-70B", **kw})


def test_mocker_launch_uses_the_tables() -> None:
    spec = _spec(workers={"agg": {"tp": 4, "replicas": 2}})
    model = resolve_model(spec.model)
    tables = tables_for(spec, model)
    cmds = worker_commands(spec, model, tables=tables)
    for cmd in cmds:
        argv = cmd.argv
        assert argv[argv.index("--planner-profile-data") + 1] == str(tables["agg"].path)
        assert argv[argv.index("--num-gpu-blocks-override") + 1] == \
            str(tables["agg"].num_gpu_blocks)
    default = _spec(workers={"agg": {"tp": 4}}, timing="mocker-default")
    assert tables_for(default, model) == {}
    assert "--planner-profile-data" not in worker_commands(default, model)[0].argv


def test_launch_rejects_what_does_not_fit() -> None:
    spec = _spec(mode="disagg", workers={"prefill": {"tp": 4}, "decode": {"tp": 1}})
    with pytest.raises(DoesNotFitError) as info:
        tables_for(spec, resolve_model(spec.model))
    assert str(info.value).startswith("workers.decode: does not fit: Llama-3.1-70B")
    assert "weights 131.4 GiB" in str(info.value)


def test_perf_cli(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "perf", "--model",
                         "Llama-3.1-70B", "--gpu", "h100_sxm", "--tp", "8", "--out",
                         str(tmp_path / "t.npz")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("fits:") and "TTFT ms" in ok.stdout
    assert set(np.load(tmp_path / "t.npz").files) == set(NPZ_KEYS)
    bad = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "perf", "--model",
                          "Llama-3.1-70B", "--gpu", "h100_sxm"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and bad.stdout.startswith("does not fit")


def test_aiconfigurator_tables_for_a_deployment() -> None:
    from dynamo_bench.perf.aic import aic_predict

    spec = _spec(workers={"agg": {"tp": 4}}, timing="aiconfigurator")
    tables = tables_for(spec)["agg"]
    assert tables.provenance["provider"] == "aiconfigurator"
    data = tables.load()
    assert set(data) == set(NPZ_KEYS)
    ref = aic_predict("Llama-3.1-70B", "h100_sxm", "mocker", tp=4, isl=2048)
    assert np.interp(2048, data["prefill_isl"], data["prefill_ttft_ms"]) == \
        pytest.approx(ref["ttft_ms"], rel=0.15)
    roofline = tables_for(_spec(workers={"agg": {"tp": 4}}, timing="roofline"))["agg"]
    assert tables.num_gpu_blocks == roofline.num_gpu_blocks


# -- the five bugs of "Predictions a user can trust", each with the test that failed before ----

def test_the_replay_times_each_engine_as_itself() -> None:
    """A TensorRT-LLM or SGLang spec used to be replayed with vLLM's timing (the replay built
    its tables as backend mocker): the three engines gave identical metrics."""
    from dynamo_bench.replay import replay
    from dynamo_bench.specs import LengthSpec, WorkloadSpec

    w = WorkloadSpec(isl=LengthSpec(mean=2048), osl=LengthSpec(mean=128), concurrency=16,
                     request_count=160)
    got = {}
    for backend in ("vllm", "trtllm", "sglang"):
        spec = _spec(backend=backend, workers={"agg": {"tp": 4}})
        assert tables_for(spec)["agg"].provenance["engine"] == backend
        got[backend] = replay(spec, w)[0]
    assert got["trtllm"].itl_ms_p50 != pytest.approx(got["vllm"].itl_ms_p50, rel=0.01)
    assert got["sglang"].ttft_ms_p50 != pytest.approx(got["vllm"].ttft_ms_p50, rel=0.01)


DEEPSEEK_V3 = {  # the architecture fields of deepseek-ai/DeepSeek-V3's config.json
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
    "moe_layer_freq": 1, "vocab_size": 129280, "torch_dtype": "bfloat16"}


def test_an_architecture_the_model_cannot_read_is_an_error_naming_what_is_missing(
        tmp_path: Path) -> None:
    """DeepSeek-V3 used to read as a 38.6B dense model that "fits" (MLA and routed experts
    ignored)."""
    from dynamo_bench.errors import SpecError

    with pytest.raises(SpecError) as info:
        ModelArch.from_config(DEEPSEEK_V3, "DeepSeek-V3")
    msg = str(info.value)
    assert "latent attention (MLA) (kv_lora_rank, q_lora_rank)" in msg
    assert "n_routed_experts" in msg and "shared experts" in msg
    (tmp_path / "config.json").write_text(json.dumps(DEEPSEEK_V3))
    with pytest.raises(SpecError, match="does not support this architecture"):
        api_predict(str(tmp_path), "h100_sxm", tp=8)
    # what it reads, it reads whole: every catalogue entry passes
    for name, m in CATALOGUE.items():
        ModelArch.from_config(m.config, name)


def test_fp8_on_tensorrt_llm_loads_an_fp8_checkpoint() -> None:
    """TensorRT-LLM fp8 specs used to point at the bf16 checkpoint while the memory fit
    assumed fp8 weights."""
    from dynamo_bench.errors import SpecError
    from dynamo_bench.serving.k8s import model_reference

    spec = _spec(backend="trtllm", precision="fp8", workers={"agg": {"tp": 2}})
    model = resolve_model(spec.model, simulated=False, precision="fp8", backend="trtllm")
    assert model == "nvidia/Llama-3.1-70B-Instruct-FP8"
    assert model_reference(spec) == model
    assert worker_commands(spec, model)[0].argv[4] == model
    with pytest.raises(SpecError, match="fp8 on trtllm needs an fp8 checkpoint"):
        resolve_model("Llama-2-70B", simulated=False, precision="fp8", backend="trtllm")
    # vLLM quantizes bf16 weights at load time where no fp8 export exists, not an fp8 one
    vllm = _spec(backend="vllm", precision="fp8", model="Llama-2-70B",
                 workers={"agg": {"tp": 2}})
    argv = worker_commands(vllm, resolve_model("Llama-2-70B", simulated=False,
                                               precision="fp8"))[0].argv
    assert "--quantization" in argv
    argv = worker_commands(spec.model_copy(update={"backend": "vllm"}), model)[0].argv
    assert "--quantization" not in argv and "--kv-cache-dtype" in argv


def test_the_roofline_reads_its_constants_from_the_versioned_file() -> None:
    from dynamo_bench.perf.calibration import DATA, Calibration, Efficiency, calibration

    cal = calibration()
    assert DATA.is_file() and cal.version.startswith("fit-")
    key, eff = cal.lookup("hopper", "fp8", "trtllm")
    assert key == "hopper/fp8/trtllm" and 0 < eff.compute < 1
    assert hw(tp=4, backend="trtllm", precision="fp8").eff == eff
    # another fit changes the prediction and the tables' cache key
    slow = Calibration("test", {key: Efficiency(**{**eff.to_dict(), "memory": eff.memory / 2})},
                       {})
    fast_hw = hw(tp=4, backend="trtllm", precision="fp8")
    slow_hw = Hardware(fast_hw.gpu, tp=4, backend="trtllm", precision="fp8", constants=slow)
    assert decode_step_ms(L70, slow_hw, 8, 2048) > decode_step_ms(L70, fast_hw, 8, 2048)
    assert RooflineProvider().cache_inputs(_query(slow_hw)) != \
        RooflineProvider().cache_inputs(_query(fast_hw))


def test_measured_tables_come_first_in_the_chain(tmp_path: Path) -> None:
    from dynamo_bench.perf.providers import MeasuredProvider, register_measured

    q = _query(hw(tp=4))
    arrays = RooflineProvider().arrays(q)
    arrays["decode_itl"] = arrays["decode_itl"] * 1.5  # "measured": slower than predicted
    register_measured(q, arrays, {"measured_on": "test"}, root=tmp_path / "measured")
    chain = [MeasuredProvider(tmp_path / "measured"), *chain_for("auto")[1:]]
    t = tables_from_chain(q, chain, num_gpu_blocks=1, block_size=64, cache_dir=tmp_path)
    assert t.provenance["provider"] == "measured"
    assert t.provenance["measured"]["measured_on"] == "test"
    assert np.allclose(t.load()["decode_itl"], arrays["decode_itl"])
    other = tables_from_chain(_query(hw(tp=8)), chain, num_gpu_blocks=1, block_size=64,
                              cache_dir=tmp_path)
    assert other.provenance["provider"] == "aiconfigurator"  # measured for tp4 only


def test_the_database_version_is_asked_once_per_installed_aiconfigurator(monkeypatch,
                                                                        tmp_path) -> None:
    """The version lookup parses every database's metadata: its answer is kept on disk, keyed
    by the installed package, and read back by the next process."""
    from dynamo_bench.perf import aic

    monkeypatch.setenv("DYNAMO_BENCH_CACHE", str(tmp_path))
    aic.database_version.cache_clear()
    found = aic.database_version("h100_sxm", "vllm")
    kept = list((tmp_path / "aic-versions").glob("*-h100_sxm-vllm.txt"))
    assert len(kept) == 1 and kept[0].read_text().strip() == found
    # a new process (the in-memory cache cleared) reads the file, not the database
    import aiconfigurator_core.sdk.perf_database as db

    def refuse(*args: object) -> str:
        raise AssertionError("the database was asked again")

    monkeypatch.setattr(db, "get_latest_database_version", refuse)
    aic.database_version.cache_clear()
    assert aic.database_version("h100_sxm", "vllm") == found
    aic.database_version.cache_clear()
    with pytest.raises(AssertionError, match="asked again"):
        aic.database_version("h200_sxm", "vllm")  # another system: not kept yet
    aic.database_version.cache_clear()
