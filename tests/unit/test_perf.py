"""The performance model's physics, memory fit boundaries (checked by hand), and tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import memory_fit
from dynamo_bench.perf.models import CATALOGUE
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms
from dynamo_bench.perf.tables import NPZ_KEYS, timing_tables
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
    assert fp8.weights_gb == pytest.approx(bf16.weights_gb / 2)
    assert fp8.kv_bytes_per_token == pytest.approx(bf16.kv_bytes_per_token / 2)
    assert decode_step_ms(L70, hw(tp=4, precision="fp8"), 1, 1024) < \
        0.6 * decode_step_ms(L70, hw(tp=4), 1, 1024)


@pytest.mark.parametrize(("model", "gpu", "tp", "pp", "precision", "fits"), [
    # 70.55B x 2 B = 141.1 GB of weights > 80 GB x 0.9 = 72 GB usable
    ("Llama-3.1-70B", "h100_sxm", 1, 1, "bf16", False),
    # TP2: 70.6 GB/GPU of weights leaves no KV room in 72 GB
    ("Llama-3.1-70B", "h100_sxm", 2, 1, "bf16", False),
    # TP4: 35.3 GB/GPU of weights, ~34 GB of KV
    ("Llama-3.1-70B", "h100_sxm", 4, 1, "bf16", True),
    # fp8 on one H100: 70.6 GB > 72 - reserve: no KV room
    ("Llama-3.1-70B", "h100_sxm", 1, 1, "fp8", False),
    # fp8 on one H200: 70.6 GB of 126.9 GB usable
    ("Llama-3.1-70B", "h200_sxm", 1, 1, "fp8", True),
    # 405B bf16 = 811.7 GB: /8 = 101.5 GB > 72 on H100, < 126.9 on H200
    ("Llama-3.1-405B", "h100_sxm", 8, 1, "bf16", False),
    ("Llama-3.1-405B", "h200_sxm", 8, 1, "bf16", True),
    ("Llama-3.1-405B", "h100_sxm", 8, 2, "bf16", True),
    # 8B (16.1 GB) on a 48 GB L40S
    ("Llama-3.1-8B", "l40s", 1, 1, "bf16", True),
    # 32B bf16 (65.5 GB) on one A100 80GB: 72 - 65.5 - 3.3 = 3.1 GB of KV, 11,904 tokens
    ("Qwen3-32B", "a100_80gb", 1, 1, "bf16", True),
    # ... but not on a 48 GB L40S (43.2 GB usable); TP4 puts 16.4 GB of weights on each
    ("Qwen3-32B", "l40s", 1, 1, "bf16", False),
    ("Qwen3-32B", "l40s", 4, 1, "bf16", True),
])
def test_memory_fit_boundaries(model, gpu, tp, pp, precision, fits) -> None:
    fit = memory_fit(arch(model), hw(gpu, tp=tp, pp=pp, precision=precision))
    assert fit.fits is fits, fit.reason
    assert fit.reason.startswith("fits" if fits else "does not fit")
    if fits:
        assert fit.num_gpu_blocks * 64 == fit.kv_tokens >= 4096


def test_kv_capacity_by_hand() -> None:
    """Llama-3.1-8B, 1 x H100, block 64: (72 - 16.06 - reserve) GB / (64 x 131072 B)."""
    fit = memory_fit(L8, hw())
    expected = int((72e9 - L8.params * 2 - fit.reserve_gb * 1e9) // (64 * 131072))
    assert fit.num_gpu_blocks == expected
    assert 6000 < fit.num_gpu_blocks < 7000


def test_tables_are_complete_cached_and_traceable(tmp_path: Path) -> None:
    tables, fit = timing_tables(L70, hw(tp=4), cache_dir=tmp_path)
    assert tables is not None and fit.fits
    data = tables.load()
    assert set(data) == set(NPZ_KEYS)
    assert data["decode_itl"].shape == (len(data["decode_active_kv_tokens"]),
                                        len(data["decode_context_length"]))
    assert np.all(np.diff(data["prefill_ttft_ms"]) > 0)
    assert tables.num_gpu_blocks == fit.num_gpu_blocks
    assert tables.provenance["provider"] == "roofline"
    assert (tables.provenance["gpu"], tables.provenance["tp"]) == ("h100_sxm", 4)
    again, _ = timing_tables(L70, hw(tp=4), cache_dir=tmp_path)
    assert again is not None and again.path == tables.path
    other, _ = timing_tables(L70, hw(tp=8), cache_dir=tmp_path)
    assert other is not None and other.path != tables.path
    none, bad = timing_tables(L70, hw(tp=1), cache_dir=tmp_path)
    assert none is None and not bad.fits


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
    spec = _spec(mode="disagg", workers={"prefill": {"tp": 4}, "decode": {"tp": 2}})
    with pytest.raises(DoesNotFitError) as info:
        tables_for(spec, resolve_model(spec.model))
    assert str(info.value).startswith("workers.decode: does not fit: Llama-3.1-70B")
    assert "weights 70.6 GB" in str(info.value)


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
    pytest.importorskip("aiconfigurator_core")
    from dynamo_bench.perf.aic import aic_predict

    spec = _spec(workers={"agg": {"tp": 4}}, timing="aiconfigurator")
    tables = tables_for(spec, resolve_model(spec.model))["agg"]
    assert tables.provenance["provider"] == "aiconfigurator"
    data = tables.load()
    assert set(data) == set(NPZ_KEYS)
    ref = aic_predict("Llama-3.1-70B", "h100_sxm", "mocker", tp=4, isl=2048)
    assert np.interp(2048, data["prefill_isl"], data["prefill_ttft_ms"]) == \
        pytest.approx(ref["ttft_ms"], rel=0.15)
    roofline = tables_for(_spec(workers={"agg": {"tp": 4}}), resolve_model(spec.model))["agg"]
    assert tables.num_gpu_blocks == roofline.num_gpu_blocks
