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


def _profiling(argv: list[str]) -> dict:
    """AIPerf's own profiling-phase resolution of the command (where a trace with timestamps
    is promoted to a fixed schedule, and a rate then refused)."""
    from aiperf.config.flags._converter_profiling import build_profiling

    return build_profiling(_aiperf_config(argv))


def _trace(tmp_path: Path, records: list[dict], name: str = "t.jsonl") -> Path:
    import json

    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("fixed", [None, True, False])
def test_a_trace_with_timestamps_gets_no_rate_unless_its_timestamps_are_ignored(
        tmp_path: Path, fixed: bool | None) -> None:
    trace = _trace(tmp_path, [{"timestamp": 100 * i, "input_length": 10, "output_length": 4}
                              for i in range(3)])
    spec = {"path": str(trace)} if fixed is None else {"path": str(trace),
                                                       "fixed_schedule": fixed}
    w = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "concurrency": 2, "trace": spec})
    argv = aiperf_argv(w, TARGET, tmp_path)
    phase = _profiling(argv)  # raised "incompatible with fixed_schedule mode: ['rate']" before
    if fixed is False:
        assert "--no-fixed-schedule" in argv and "--request-rate" in argv
        assert str(phase["type"]) != "fixed_schedule"
    else:
        assert "--fixed-schedule" in argv and "--request-rate" not in argv
        assert str(phase["type"]) == "fixed_schedule"


def test_a_trace_without_timestamps_keeps_the_pacing_rate(tmp_path: Path) -> None:
    trace = _trace(tmp_path, [{"input_length": 10, "output_length": 4}])
    w = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "concurrency": 2, "trace": {
        "path": str(trace), "block_size": 16}})
    argv = aiperf_argv(w, TARGET, tmp_path)
    assert "--request-rate" in argv and "--fixed-schedule" not in argv
    assert _aiperf_config(argv).prompt_input_tokens_block_size == 16
    _profiling(argv)


def test_request_count_has_a_sane_upper_bound() -> None:
    for field in ("request_count", "warmup_requests"):
        with pytest.raises(SpecError) as info:
            parse_spec(WorkloadSpec, {**BASE, field: 10**30}, "w.yaml")
        msg = str(info.value)
        assert msg.startswith(f"w.yaml: {field}: ") and "10,000,000" in msg and "\n" not in msg
    assert parse_spec(WorkloadSpec, {**BASE, "request_count": 10_000_000}).request_count


def test_a_rate_cannot_be_combined_with_a_fixed_schedule() -> None:
    with pytest.raises(SpecError, match="request_rate: cannot be combined"):
        parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "request_rate": 2,
                                  "trace": {"path": "t.jsonl", "fixed_schedule": True}})


def _check(tmp_path: Path, records_or_text, **trace) -> None:
    from dynamo_bench.loadgen.preflight import check_trace

    path = tmp_path / "t.jsonl"
    if isinstance(records_or_text, str):
        path.write_text(records_or_text)
    else:
        _trace(tmp_path, records_or_text)
    load = trace.pop("load", {"concurrency": 2})
    w = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, **load,
                                  "trace": {"path": str(path), **trace}})
    return check_trace(w)


def _refused(tmp_path: Path, records_or_text, field: str, *hints: str, **trace) -> str:
    with pytest.raises(SpecError) as info:
        _check(tmp_path, records_or_text, **trace)
    msg = str(info.value)
    assert info.value.field == field and "\n" not in msg, msg
    for hint in hints:
        assert hint in msg, msg
    return msg


def test_preflight_missing_trace_file(tmp_path: Path) -> None:
    from dynamo_bench.loadgen.preflight import check_trace

    w = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "concurrency": 1,
                                  "trace": {"path": str(tmp_path / "nope.jsonl")}})
    with pytest.raises(SpecError) as info:
        check_trace(w)
    assert info.value.field == "trace.path" and "nope.jsonl does not exist" in str(info.value)


def test_preflight_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    good = '{"input_length": 10, "output_length": 4}\n'
    _refused(tmp_path, good + "\n" + good + '{"input_length": 10,\n', "trace.path",
             "t.jsonl line 4 is not valid JSON")
    _refused(tmp_path, good + "[1, 2]\n", "trace.path", "line 2 is not a JSON object")
    _refused(tmp_path, "\n\n", "trace.path", "holds no records")
    info = _check(tmp_path, good * 3)
    assert info.records == 3 and not info.timestamps


def test_preflight_hash_ids_must_fit_the_block_size(tmp_path: Path) -> None:
    # AIPerf fails on this inside its dataset manager, after the stack has started:
    # "Input length: 300, Hash IDs: [0, 1, 2], Block size: 512 are not compatible"
    short = [{"input_length": 300, "output_length": 4, "hash_ids": [0, 1, 2]}]
    _refused(tmp_path, short, "trace.block_size", "line 1", "input_length 300", "512",
             "more than 1024")
    assert _check(tmp_path, short, block_size=128).records == 1  # 256 < 300 <= 384
    assert _check(tmp_path, [{"input_length": 1200, "output_length": 4,
                              "hash_ids": [0, 1, 2]}]).records == 1
    # fewer hash_ids than the length needs: AIPerf pads the tail (a cached prefix only)
    assert _check(tmp_path, [{"input_length": 5000, "output_length": 4, "hash_ids": [0]}])


def test_preflight_fixed_schedule_needs_timestamps_and_no_rate(tmp_path: Path) -> None:
    _refused(tmp_path, [{"input_length": 10, "output_length": 4}], "trace.fixed_schedule",
             "no timestamp", fixed_schedule=True)
    stamped = [{"timestamp": 0, "input_length": 10, "output_length": 4}]
    _refused(tmp_path, stamped, "request_rate", "timestamps",
             load={"request_rate": 2})
    assert _check(tmp_path, stamped, load={"request_rate": 2}, fixed_schedule=False)
    assert _check(tmp_path, stamped).timestamps


def _server(models: list[str]):
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"object": "list", "data": [{"id": m} for m in models]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_preflight_server_closed_port_and_wrong_model() -> None:
    import socket
    import time

    from dynamo_bench.loadgen.preflight import check_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SpecError) as info:
        check_server(f"http://127.0.0.1:{port}/v1", "m")
    assert info.value.field == "--url" and "connection refused" in str(info.value)
    server = _server(["a", "b"])
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert check_server(f"{url}/v1", "b") == ["a", "b"]
        with pytest.raises(SpecError) as info:
            check_server(url, "x")
        assert info.value.field == "--model"
        assert f"'x' is not served at {url} (it serves: a, b)" in str(info.value)
    finally:
        server.shutdown()


def test_bench_scales_requests_with_concurrency_like_tune() -> None:
    from dynamo_bench.loadgen.bench import REQUESTS_PER_SLOT, _at, scaled_workload

    w = parse_spec(WorkloadSpec, {**BASE, "request_count": 12})
    counts = [_at(w, "concurrency", c, 0, REQUESTS_PER_SLOT).request_count
              for c in (1, 2, 64)]
    assert counts == [12, 16, 512]
    assert _at(w, "concurrency", 64, 0).request_count == 12  # None: the fixed count
    assert _at(w, "request_rate", 64, 0, 8).request_count == 12  # rates are not scaled
    timed = parse_spec(WorkloadSpec, {**BASE, "duration_s": 5})
    assert scaled_workload(timed.at(concurrency=64), 8).effective_request_count is None


def test_bench_refuses_a_bad_trace_before_writing_anything(tmp_path: Path) -> None:
    from dynamo_bench import api

    trace = tmp_path / "t.jsonl"
    trace.write_text('{"input_length": 10, "output_length": 4}\nnot json\n')
    w = parse_spec(WorkloadSpec, {"osl": {"mean": 4}, "concurrency": 1,
                                  "trace": {"path": str(trace)}})
    out = tmp_path / "out"
    with pytest.raises(SpecError, match="line 2"):
        api.bench(api.load_deployment(REPO / "serving" / "agg.yaml"), w,
                  loads=[("concurrency", 1)], out=out)
    assert not out.exists()


def test_bench_cli_refuses_a_closed_url_in_one_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "dynamo_bench.cli", "bench", "--url",
                          f"http://127.0.0.1:{port}/v1", "--model", "Qwen3-8B", "-w",
                          str(REPO / "sweeps/workloads/tiny.yaml"), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "connection refused" in out.stderr
    assert not (tmp_path / "o").exists()
