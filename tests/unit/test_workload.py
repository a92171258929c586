"""Workload specs: validation, and the AIPerf command checked by AIPerf's own CLI parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dynamo_bench.errors import SpecError
from dynamo_bench.loadgen.aiperf import Target, aiperf_argv
from dynamo_bench.specs import WorkloadSpec, load_workload, parse_spec

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = sorted((REPO / "sweeps" / "workloads").glob("*.yaml"))
BASE = {"isl": {"mean": 256}, "osl": {"mean": 32}, "concurrency": 4}


@pytest.mark.parametrize("path", WORKLOADS, ids=[p.name for p in WORKLOADS])
def test_shipped_workloads_load(path: Path) -> None:
    assert load_workload(str(path)).name == path.stem


BAD = [
    ("unknown-field", {**BASE, "qps": 3}, "qps", "allowed"),
    ("negative-length", {**BASE, "isl": {"mean": -5}}, "isl.mean", ">= 1"),
    ("negative-stddev", {**BASE, "osl": {"mean": 5, "stddev": -1}}, "osl.stddev", ">= 0"),
    ("no-load", {"isl": {"mean": 1}, "osl": {"mean": 1}}, "concurrency", "request_rate"),
    ("zero-rate", {**BASE, "request_rate": 0}, "request_rate", "> 0"),
    ("missing-osl", {"isl": {"mean": 1}, "concurrency": 1}, "osl", "required"),
    ("count-and-duration", {**BASE, "request_count": 5, "duration_s": 10}, "duration_s", "not both"),
    ("images-on-completions", {**BASE, "endpoint": "completions",
                               "images": {"width": 64, "height": 64}}, "images", "chat"),
    ("burstiness-without-gamma", {**BASE, "request_rate": 2, "burstiness": 0.5}, "burstiness",
     "gamma"),
    ("trace-with-isl", {**BASE, "trace": {"path": "t.jsonl"}}, "isl", "trace"),
    ("bad-arrival", {**BASE, "request_rate": 2, "arrival": "bursty"}, "arrival", "poisson"),
    ("bad-trace-format", {"osl": {"mean": 4}, "concurrency": 1,
                          "trace": {"path": "t", "format": "csv"}}, "trace.format", "mooncake"),
]


@pytest.mark.parametrize(("data", "field", "hint"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_workload_names_the_field(data: dict, field: str, hint: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(WorkloadSpec, data, "w.yaml")
    msg = str(info.value)
    assert msg.startswith(f"w.yaml: {field}: ") and hint in msg and "\n" not in msg, msg


def _aiperf_config(argv: list[str]):
    import aiperf.cli

    assert argv[1:4] == ["-m", "aiperf", "profile"]
    _, bound, _ = aiperf.cli.app.parse_args(argv[3:], exit_on_error=False, print_error=False)
    return bound.arguments["cli_config"]


TARGET = Target("http://127.0.0.1:8000", "m", Path("/tok"), gpus=2)


def test_aiperf_command_parses_with_aiperf(tmp_path: Path) -> None:
    w = parse_spec(WorkloadSpec, {
        "isl": {"mean": 512, "stddev": 32}, "osl": {"mean": 64, "stddev": 4}, "concurrency": 8,
        "prefix": {"pool_size": 16, "length": 1500}, "shared_system_prompt_length": 100,
        "warmup_requests": 3, "seed": 9, "request_count": 80})
    cfg = _aiperf_config(aiperf_argv(w, TARGET, tmp_path))
    assert cfg.model_names == ["m"] and cfg.urls == ["http://127.0.0.1:8000"]
    assert cfg.tokenizer_name == "/tok" and cfg.streaming is True
    assert (cfg.prompt_input_tokens_mean, cfg.prompt_input_tokens_stddev) == (512, 32)
    assert (cfg.prompt_output_tokens_mean, cfg.prompt_output_tokens_stddev) == (64, 4)
    assert (cfg.prompt_prefix_pool_size, cfg.prompt_prefix_length) == (16, 1500)
    assert cfg.prompt_prefix_shared_system_length == 100
    assert (cfg.concurrency, cfg.request_count, cfg.warmup_request_count) == (8, 80, 3)
    assert cfg.random_seed == 9
    assert cfg.connection_reuse_strategy == "never"
    assert ["ignore_eos", True] in [list(x) for x in cfg.extra_inputs]


def test_open_loop_multi_turn_images_trace(tmp_path: Path) -> None:
    rate = parse_spec(WorkloadSpec, {**BASE, "concurrency": None, "request_rate": 2.5,
                                     "arrival": "gamma", "burstiness": 0.5, "duration_s": 30,
                                     "multi_turn": {"turns_mean": 4, "delay_ms_mean": 200,
                                                    "sessions": 10},
                                     "images": {"width": 320, "height": 240, "per_request": 2}})
    cfg = _aiperf_config(aiperf_argv(rate, TARGET, tmp_path))
    assert (cfg.request_rate, str(cfg.arrival_pattern), cfg.arrival_smoothness) == \
        (2.5, "gamma", 0.5)
    assert cfg.benchmark_duration == 30
    assert cfg.conversation_turn_mean == 4 and cfg.conversation_num == 10
    assert (cfg.image_batch_size, cfg.image_width_mean, cfg.image_height_mean) == (2, 320, 240)
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 4}\n')
    tw = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "concurrency": 2,
                                   "trace": {"path": str(trace), "fixed_schedule": True}})
    cfg = _aiperf_config(aiperf_argv(tw, TARGET, tmp_path))
    assert str(cfg.input_file) == str(trace) and str(cfg.custom_dataset_type) == "mooncake_trace"
    assert cfg.fixed_schedule is True


def test_aiperf_parser_rejects_unknown_flags() -> None:
    """The check above is real: a misspelt flag fails AIPerf's parser."""
    with pytest.raises(Exception, match="--isl-mean"):
        _aiperf_config(["py", "-m", "aiperf", "profile", "--model", "m", "--isl-mean", "4"])


def test_default_request_count() -> None:
    assert parse_spec(WorkloadSpec, {**BASE, "concurrency": 16}).effective_request_count == 160
    assert parse_spec(WorkloadSpec, {**BASE, "concurrency": None, "request_rate": 4}
                      ).effective_request_count == 80
    assert parse_spec(WorkloadSpec, {**BASE, "duration_s": 5}).effective_request_count is None


def test_cli_bad_workload_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "w.yaml"
    bad.write_text(yaml.safe_dump({"isl": {"mean": 1}, "osl": {"mean": 1}}))
    for args in (["--workload", str(bad)],
                 ["--workload", str(REPO / "sweeps/workloads/chat.yaml"), "--sla", "ttft.p90<=1",
                  "--find-max-load"],
                 ["--workload", str(REPO / "sweeps/workloads/chat.yaml"), "--concurrency",
                  "1,x"]):
        out = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "bench",
                              str(REPO / "serving" / "agg.yaml"), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
