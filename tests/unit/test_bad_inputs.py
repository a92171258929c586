"""Bad input, table-driven, through the real command line: every case exits 2 with one line on
stderr that names the input, shows no traceback, starts nothing and writes nothing.

Each case runs `dynamo-bench` in-process (`cli.main`) in an empty working folder that holds only
the files the case sets up; the folder (and the model cache inside it) must be unchanged after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dynamo_bench import cli

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "sweeps" / "quickstart.yaml")
CHAT = str(REPO / "sweeps" / "workloads" / "chat.yaml")
AGG = str(REPO / "serving" / "agg.yaml")

GOOD_SPEC = "name: t\nmodel: Qwen3-8B\nworkers:\n  agg: {replicas: 1, tp: 1}\n"
GOOD_WORKLOAD = ("name: w\nisl: {mean: 64}\nosl: {mean: 8}\nconcurrency: 1\n"
                 "request_count: 4\n")
GOOD_SWEEP = f"""name: s
deployment: {{model: Qwen3-8B, backend: mocker, gpu: h100_sxm}}
budget: {{gpus: 2, trials: 4}}
space: {{mode: [agg], tp: [1, 2]}}
workload: {CHAT}
sla: {{chat: "ttft_ms.p90<=500"}}
"""
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def spec(**replace: str) -> str:
    text = GOOD_SPEC
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def sweep_with(old: str, new: str) -> str:
    assert old in GOOD_SWEEP
    return GOOD_SWEEP.replace(old, new)


@dataclass
class Case:
    id: str
    args: list[str]
    expect: str  # a piece of the message: the field or input it must name
    files: dict[str, str | bytes] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)


CASES = [
    # -- the command line itself -----------------------------------------------------------
    Case("unknown-command", ["servee"], "servee"),
    Case("unknown-flag", ["serve", AGG, "--foo"], "--foo"),
    Case("unknown-root-flag", ["--frobnicate"], "--frobnicate"),
    Case("unknown-model-subcommand", ["model", "mkae"], "mkae"),
    Case("unknown-notebook-subcommand", ["notebook", "execute"], "execute"),
    Case("tune-trials-0", ["tune", QUICKSTART, "--trials", "0"], "--trials"),
    Case("tune-trials-negative", ["tune", QUICKSTART, "--trials", "-1"], "--trials"),
    Case("tune-trials-text", ["tune", QUICKSTART, "--trials", "many"], "--trials"),
    Case("tune-wall-0", ["tune", QUICKSTART, "--wall", "0"], "--wall"),
    Case("tune-missing-argument", ["tune"], "SWEEP.yaml"),
    Case("tune-sampler", ["tune", QUICKSTART, "--sampler", "annealing"], "sampler"),
    Case("tune-storage-scheme", ["tune", QUICKSTART, "--storage", "elsewhere"], "storage"),
    Case("perf-missing-gpu", ["perf", "--model", "Qwen3-8B"], "--gpu"),
    Case("perf-block-size-0", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm",
                               "--block-size", "0"], "--block-size"),
    Case("perf-tp-0", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm", "--tp", "0"],
         "--tp"),
    Case("perf-tp-3", ["perf", "--model", "Qwen3-32B", "--gpu", "h100_sxm", "--tp", "3"],
         "tp 3"),
    Case("perf-pp-0", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm", "--pp", "0"],
         "--pp"),
    Case("perf-gpu", ["perf", "--model", "Qwen3-8B", "--gpu", "h900"], "h900"),
    Case("perf-model", ["perf", "--model", "Nope-1B", "--gpu", "h100_sxm"], "Nope-1B"),
    Case("perf-model-case", ["perf", "--model", "qwen3-8b", "--gpu", "h100_sxm"], "Qwen3-8B"),
    Case("perf-backend", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm",
                          "--backend", "tgi"], "backend"),
    Case("perf-precision", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm",
                            "--precision", "int3"], "precision"),
    Case("perf-timing", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm",
                         "--timing", "guess"], "timing"),
    Case("perf-out-directory", ["perf", "--model", "Qwen3-8B", "--gpu", "h100_sxm",
                                "--out", "adir"], "--out", dirs=["adir"]),
    Case("bench-no-workload", ["bench", AGG], "--workload"),
    Case("bench-concurrency-0", ["bench", AGG, "-w", CHAT, "--concurrency", "0"],
         "--concurrency"),
    Case("bench-concurrency-text", ["bench", AGG, "-w", CHAT, "--concurrency", "1,x"],
         "--concurrency"),
    Case("bench-rate-negative", ["bench", AGG, "-w", CHAT, "--request-rate", "-2"],
         "--request-rate"),
    Case("bench-both-loads", ["bench", AGG, "-w", CHAT, "--concurrency", "1",
                              "--request-rate", "2"], "--request-rate"),
    Case("bench-no-target", ["bench", "-w", CHAT], "SPEC.yaml"),
    Case("bench-spec-and-url", ["bench", AGG, "-w", CHAT, "--url", "http://127.0.0.1:9"],
         "SPEC.yaml"),
    Case("bench-url-no-model", ["bench", "-w", CHAT, "--url", "http://127.0.0.1:9"],
         "--model"),
    Case("bench-find-max-load-no-sla", ["bench", AGG, "-w", CHAT, "--find-max-load"],
         "--sla"),
    Case("bench-sla-syntax", ["bench", AGG, "-w", CHAT, "--sla", "ttft<5"], "--sla"),
    Case("bench-sla-metric", ["bench", AGG, "-w", CHAT, "--sla", "speed.p90<=5"], "speed"),
    Case("bench-max-load-0", ["bench", AGG, "-w", CHAT, "--sla", "ttft_ms.p90<=500",
                              "--find-max-load", "--max-load", "0"], "--max-load"),
    Case("bench-out-file", ["bench", AGG, "-w", CHAT, "--out", "afile"], "--out",
         files={"afile": "x"}),
    Case("model-make-unknown", ["model", "make", "Nope-1B", "m"], "Nope-1B"),
    Case("model-make-onto-file", ["model", "make", "Qwen3-8B", "afile"], "afile",
         files={"afile": "keep me"}),
    Case("notebook-unknown", ["notebook", "run", "nope"], "nope"),
    Case("notebook-param-incomplete", ["notebook", "run", "quickstart", "-p", "trials"], "-p"),
    Case("report-missing-folder", ["report", "nowhere"], "nowhere"),
    Case("report-not-a-study", ["report", "adir"], "adir", dirs=["adir"]),
    Case("profile-isl-0", ["profile", AGG, "--out", "p", "--isl", "0"], "--isl"),
    Case("profile-out-file", ["profile", AGG, "--out", "afile"], "--out",
         files={"afile": "x"}),
    Case("serve-logs-file", ["serve", AGG, "--logs", "afile", "--check"], "--logs",
         files={"afile": "x"}),
    Case("serve-k8s-out-directory", ["serve", AGG, "--k8s", "--out", "adir"], "--out",
         dirs=["adir"]),
    Case("serve-k8s-namespace", ["serve", AGG, "--k8s", "--namespace", "Bad_NS"],
         "namespace"),
    Case("serve-k8s-image", ["serve", AGG, "--k8s", "--image", "has space:1"], "image"),
    Case("serve-timeout-0", ["serve", AGG, "--timeout", "0"], "--timeout"),
    Case("serve-duration-negative", ["serve", AGG, "--duration", "-1"], "--duration"),
    # -- spec files ------------------------------------------------------------------------
    Case("spec-missing", ["serve", "nope.yaml", "--k8s"], "nope.yaml"),
    Case("spec-directory", ["serve", "adir", "--k8s"], "adir", dirs=["adir"]),
    Case("spec-binary", ["serve", "s.yaml", "--k8s"], "s.yaml", files={"s.yaml": BINARY}),
    Case("spec-empty", ["serve", "s.yaml", "--k8s"], "empty", files={"s.yaml": ""}),
    Case("spec-list", ["serve", "s.yaml", "--k8s"], "mapping", files={"s.yaml": "- a\n- b\n"}),
    Case("spec-yaml-syntax", ["serve", "s.yaml", "--k8s"], "line",
         files={"s.yaml": "name: [unclosed\n"}),
    Case("spec-unknown-field", ["serve", "s.yaml", "--k8s"], "colour",
         files={"s.yaml": GOOD_SPEC + "colour: red\n"}),
    Case("spec-replicas-0", ["serve", "s.yaml", "--k8s"], "replicas",
         files={"s.yaml": spec(**{"replicas: 1": "replicas: 0"})}),
    Case("spec-replicas-huge", ["serve", "s.yaml", "--k8s"], "replicas",
         files={"s.yaml": spec(**{"replicas: 1": f"replicas: {10**20}"})}),
    Case("spec-replicas-100000", ["serve", "s.yaml", "--k8s"], "replicas",
         files={"s.yaml": spec(**{"replicas: 1": "replicas: 100000"})}),
    Case("spec-replicas-text", ["serve", "s.yaml", "--k8s"], "replicas",
         files={"s.yaml": spec(**{"replicas: 1": "replicas: two"})}),
    Case("serve-more-workers-than-memory", ["serve", "s.yaml", "--check"], "replicas",
         files={"s.yaml": spec(**{"replicas: 1": "replicas: 1000"})}),
    Case("spec-tp-3-mocker", ["serve", "s.yaml", "--k8s"], "tp",
         files={"s.yaml": spec(**{"tp: 1": "tp: 3"})}),
    Case("spec-tp-huge", ["serve", "s.yaml", "--k8s"], "tp",
         files={"s.yaml": spec(**{"tp: 1": "tp: 4096"})}),
    Case("spec-tp-3-vllm", ["serve", "s.yaml", "--k8s"], "tp",
         files={"s.yaml": spec(**{"tp: 1": "tp: 3", "name: t": "name: t\nbackend: vllm"})}),
    Case("spec-host-empty", ["serve", "s.yaml", "--k8s"], "frontend.host",
         files={"s.yaml": GOOD_SPEC + "frontend: {host: ''}\n"}),
    Case("spec-host-garbage", ["serve", "s.yaml", "--k8s"], "frontend.host",
         files={"s.yaml": GOOD_SPEC + "frontend: {host: 'a b'}\n"}),
    Case("spec-port", ["serve", "s.yaml", "--k8s"], "frontend.port",
         files={"s.yaml": GOOD_SPEC + "frontend: {port: 70000}\n"}),
    Case("spec-model-case", ["serve", "s.yaml", "--k8s"], "Qwen3-8B",
         files={"s.yaml": spec(**{"Qwen3-8B": "qwen3-8b"})}),
    Case("spec-gpu", ["serve", "s.yaml", "--k8s"], "gpu",
         files={"s.yaml": GOOD_SPEC + "gpu: h900\n"}),
    Case("spec-backend", ["serve", "s.yaml", "--k8s"], "backend",
         files={"s.yaml": GOOD_SPEC + "backend: tgi\n"}),
    Case("spec-name", ["serve", "s.yaml", "--k8s"], "name",
         files={"s.yaml": spec(**{"name: t": "name: Not_A_Name"})}),
    Case("spec-timing", ["serve", "s.yaml", "--k8s"], "timing",
         files={"s.yaml": GOOD_SPEC + "timing: guess\n"}),
    Case("spec-disagg-without-prefill", ["serve", "s.yaml", "--k8s"], "prefill",
         files={"s.yaml": "name: t\nmodel: Qwen3-8B\nmode: disagg\nworkers:\n  decode: {}\n"}),
    Case("spec-block-size-vllm", ["serve", "s.yaml", "--k8s"], "block_size",
         files={"s.yaml": spec(**{"name: t": "name: t\nbackend: vllm",
                                  "tp: 1": "tp: 1, block_size: 7"})}),
    Case("spec-batch-limits", ["serve", "s.yaml", "--k8s"], "max_num_batched_tokens",
         files={"s.yaml": spec(**{"tp: 1": "tp: 1, max_num_seqs: 64, "
                                  "max_num_batched_tokens: 8"})}),
    Case("spec-memory-utilization", ["serve", "s.yaml", "--k8s"], "gpu_memory_utilization",
         files={"s.yaml": spec(**{"tp: 1": "tp: 1, gpu_memory_utilization: 1.5"})}),
    Case("spec-speedup-0", ["serve", "s.yaml", "--k8s"], "speedup_ratio",
         files={"s.yaml": spec(**{"tp: 1": "tp: 1, speedup_ratio: 0"})}),
    Case("spec-startup-timeout", ["serve", "s.yaml", "--k8s"], "startup_timeout_s",
         files={"s.yaml": GOOD_SPEC + "startup_timeout_s: -1\n"}),
    # -- workloads and traces --------------------------------------------------------------
    Case("workload-missing", ["bench", AGG, "-w", "nope.yaml"], "nope.yaml"),
    Case("workload-binary", ["bench", AGG, "-w", "w.yaml"], "w.yaml",
         files={"w.yaml": BINARY}),
    Case("workload-unknown-field", ["bench", AGG, "-w", "w.yaml"], "colour",
         files={"w.yaml": GOOD_WORKLOAD + "colour: red\n"}),
    Case("workload-isl-0", ["bench", AGG, "-w", "w.yaml"], "isl",
         files={"w.yaml": GOOD_WORKLOAD.replace("mean: 64", "mean: 0")}),
    Case("workload-request-count-huge", ["bench", AGG, "-w", "w.yaml"], "request_count",
         files={"w.yaml": GOOD_WORKLOAD.replace("request_count: 4",
                                                f"request_count: {10**30}")}),
    Case("workload-trace-missing", ["bench", AGG, "-w", "w.yaml"], "trace",
         files={"w.yaml": "name: w\ntrace: {path: missing.jsonl}\nconcurrency: 1\n"}),
    Case("workload-trace-bad-json", ["bench", AGG, "-w", "w.yaml"], "line 2",
         files={"w.yaml": "name: w\ntrace: {path: t.jsonl}\nconcurrency: 1\n",
                "t.jsonl": '{"input_length": 10, "output_length": 2}\n{not json\n'}),
    Case("workload-trace-binary", ["bench", AGG, "-w", "w.yaml"], "t.jsonl",
         files={"w.yaml": "name: w\ntrace: {path: t.jsonl}\nconcurrency: 1\n", "t.jsonl": BINARY}),
    Case("workload-trace-empty", ["bench", AGG, "-w", "w.yaml"], "t.jsonl",
         files={"w.yaml": "name: w\ntrace: {path: t.jsonl}\nconcurrency: 1\n", "t.jsonl": ""}),
    # -- sweeps ----------------------------------------------------------------------------
    Case("sweep-missing", ["tune", "nope.yaml"], "nope.yaml"),
    Case("sweep-binary", ["tune", "s.yaml"], "s.yaml", files={"s.yaml": BINARY}),
    Case("sweep-unknown-field", ["tune", "s.yaml"], "colour",
         files={"s.yaml": GOOD_SWEEP + "colour: red\n"}),
    Case("sweep-sla", ["tune", "s.yaml"], "sla",
         files={"s.yaml": sweep_with('"ttft_ms.p90<=500"', '"ttft<=fast"')}),
    Case("sweep-trials-0", ["tune", "s.yaml"], "trials",
         files={"s.yaml": sweep_with("trials: 4", "trials: 0")}),
    Case("sweep-tp-3", ["tune", "s.yaml"], "tp",
         files={"s.yaml": sweep_with("tp: [1, 2]", "tp: [1, 3]")}),
    Case("sweep-gpus-too-few", ["tune", "s.yaml"], "budget.gpus",
         files={"s.yaml": sweep_with("tp: [1, 2]", "tp: [4]")}),
    Case("sweep-workload-missing", ["tune", "s.yaml"], "workload",
         files={"s.yaml": sweep_with(CHAT, "nope.yaml")}),
    Case("sweep-trace-bad-json", ["tune", "s.yaml"], "line 1",
         files={"s.yaml": GOOD_SWEEP.replace(f"workload: {CHAT}",
                                             "workload: {trace: {path: t.jsonl}, concurrency: 1}"),
                "t.jsonl": "{oops\n"}),
    Case("sweep-model-case", ["tune", "s.yaml"], "Qwen3-8B",
         files={"s.yaml": sweep_with("model: Qwen3-8B", "model: QWEN3-8b")}),
    Case("tune-out-file", ["tune", "s.yaml", "--out", "afile"], "--out",
         files={"s.yaml": GOOD_SWEEP, "afile": "x"}),
    Case("tune-journal-unwritable", ["tune", "s.yaml", "--storage",
                                     "journal:/proc/no/such/study.journal"], "storage",
         files={"s.yaml": GOOD_SWEEP}),
    Case("tune-postgres-unreachable", ["tune", "s.yaml", "--out", "st", "--storage",
                                       "postgresql://user:hunter2@127.0.0.1:9/db"], "storage",
         files={"s.yaml": GOOD_SWEEP}),
    Case("peer-missing", ["peer", "nope.yaml"], "nope.yaml"),
    Case("peer-tier", ["peer", QUICKSTART, "--tier", "nope"], "nope"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes)
                                      else content.encode())
    for name in case.dirs:
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYNAMO_BENCH_CACHE", str(tmp_path / ".cache"))
    before = _snapshot(tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        cli.main(case.args)

    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, f"exit {exit_info.value.code}; stderr: {err}"
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("dynamo-bench: error: "), lines[0]
    assert "Traceback" not in err + out
    assert case.expect in lines[0], f"{case.expect!r} not named in: {lines[0]}"
    assert "hunter2" not in err + out, "a password reached the terminal"
    assert _snapshot(tmp_path) == before, "a bad input wrote or changed files"


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("args", [["-h"], ["--help"], [], ["serve", "-h"], ["tune", "--help"],
                                  ["model"], ["notebook", "-h"]])
def test_help_exits_zero(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert "Usage" in out + err


def test_every_command_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [["serve"], ["bench"], ["tune"], ["peer"], ["report"], ["profile"], ["perf"],
                ["model", "make"], ["model", "list"], ["notebook", "run"], ["notebook", "list"]]
    missing = []
    for command in commands:
        with pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        out, _ = capsys.readouterr()
        example = out.split("Example", 1)[-1] if "Example" in out else ""
        if f"dynamo-bench {' '.join(command)} " not in example + " ":
            missing.append(" ".join(command))
    assert not missing, f"no example in the help of: {missing}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 0
    assert out.startswith("dynamo-bench ") and "ai-dynamo" in out


def test_no_process_or_file_from_a_closed_url(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A URL nothing listens on is refused at once, before AIPerf starts."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "-w", CHAT, "--url", "http://127.0.0.1:9", "--model", "m"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2, err
    assert "127.0.0.1:9" in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
    assert os.listdir(tmp_path) == []


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """--help and usage errors stay fast because nothing heavy is imported up front
    (tests/benchmarks/bench_cli_startup.py measures the time)."""
    import subprocess
    import sys

    heavy = ("pandas", "optuna", "matplotlib", "dynamo", "aiperf", "numpy", "scipy")
    code = ("import sys, dynamo_bench, dynamo_bench.cli\n"
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"imported at start-up: {out}"


def test_the_tune_function_is_not_hidden_by_the_tune_subpackage() -> None:
    import subprocess
    import sys

    code = ("import dynamo_bench.tune.tuner, dynamo_bench.api\n"
            "import dynamo_bench as db\n"
            "from dynamo_bench import tune\n"
            "assert callable(db.tune) and tune is db.tune is dynamo_bench.api.tune\n"
            "assert 'dynamo_bench' not in vars(db)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
