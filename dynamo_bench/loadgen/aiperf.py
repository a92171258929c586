"""Run AIPerf (the real load client) as a subprocess in a private run folder.

`aiperf_argv` is pure: WorkloadSpec + target -> the `aiperf profile` command line. `run_aiperf`
runs it with its temporary and memory-mapped files inside the run folder, offline and
non-interactive, in its own process group (stopped on Ctrl-C like every other process).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.serving.process import ManagedProcess, ProcessSpec, stop_all
from dynamo_bench.specs.workload import WorkloadSpec


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible server to load.

    Attributes:
        url: base URL without `/v1` (http://127.0.0.1:8000).
        model: the model name requests carry.
        tokenizer: a local tokenizer directory (AIPerf sizes prompts with it).
        gpus: GPUs behind the server, for per-GPU throughput (0: unknown).
        speedup_ratio: the mocker's speed-up; latencies are rescaled by it.
        metrics_url: Prometheus endpoint of the frontend (None: not a Dynamo frontend).
        disaggregated: prefill runs on other workers than decode (the request-plane round trip
            then excludes prefill, so the non-engine overhead cannot be derived from it).
    """

    url: str
    model: str
    tokenizer: Path
    gpus: int = 0
    speedup_ratio: float = 1.0
    metrics_url: str | None = None
    disaggregated: bool = False


class AIPerfError(DynamoBenchError):
    """AIPerf exited non-zero or wrote no results. `log_tail` holds its last output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message + (f"\n--- aiperf output ---\n{log_tail}" if log_tail else ""))


def aiperf_argv(workload: WorkloadSpec, target: Target, artifact_dir: Path,
                python: str = sys.executable) -> list[str]:
    """The `aiperf profile` command for one load point of `workload` against `target`.

    Pure but for a trace: its first record is read to know whether it has timestamps (AIPerf
    then replays them unless `trace.fixed_schedule` is false)."""
    w = workload
    replay = False
    if w.trace is not None:
        from dynamo_bench.loadgen.preflight import first_record_has_timestamp, trace_path

        timestamps = first_record_has_timestamp(trace_path(w.trace))
        replay = bool(w.trace.fixed_schedule) or (w.trace.fixed_schedule is None
                                                   and timestamps)
    argv = [python, "-m", "aiperf", "profile", "--model", target.model, "--url", target.url,
            "--endpoint-type", w.endpoint, "--tokenizer", str(target.tokenizer),
            "--random-seed", str(w.seed), "--ui", "none", "--no-gpu-telemetry",
            "--no-server-metrics", "--use-server-token-count",
            "--request-timeout-seconds", _num(w.request_timeout_s),
            "--artifact-dir", str(artifact_dir)]
    argv += ["--connection-reuse-strategy", w.connection_reuse]
    if w.streaming:
        argv.append("--streaming")
    if w.concurrency is not None:
        argv += ["--concurrency", str(w.concurrency)]
        if w.ramp_s and w.concurrency > 1 and w.request_rate is None:
            argv += ["--concurrency-ramp-duration", _num(round(w.ramp_s, 3))]
    if w.request_rate is not None:
        argv += ["--request-rate", _num(w.request_rate), "--arrival-pattern", w.arrival]
        if w.burstiness is not None:
            argv += ["--arrival-smoothness", _num(w.burstiness)]
    elif not replay:
        # A closed loop still paces credits at a rate; a high constant one stops AIPerf's
        # timing loop from spinning a core while it waits for a free slot. Not when the
        # trace's timestamps are replayed: AIPerf refuses a rate with a fixed schedule.
        argv += ["--request-rate", "1000", "--arrival-pattern", "constant"]
    count = w.effective_request_count
    if count is not None:
        argv += ["--request-count", str(count)]
    else:
        assert w.duration_s is not None
        argv += ["--benchmark-duration", _num(w.duration_s)]
    if w.warmup_requests:
        argv += ["--warmup-request-count", str(w.warmup_requests)]
    if w.isl is not None:
        argv += ["--isl", str(w.isl.mean), "--isl-stddev", _num(w.isl.stddev)]
    if w.osl is not None:
        argv += ["--osl", str(w.osl.mean), "--osl-stddev", _num(w.osl.stddev)]
    if w.ignore_eos:
        argv += ["--extra-inputs", "ignore_eos:true"]
    if w.prefix is not None:
        argv += ["--prefix-prompt-pool-size", str(w.prefix.pool_size),
                 "--prefix-prompt-length", str(w.prefix.length)]
    if w.shared_system_prompt_length is not None:
        argv += ["--shared-system-prompt-length", str(w.shared_system_prompt_length)]
    if w.multi_turn is not None:
        mt = w.multi_turn
        argv += ["--session-turns-mean", _num(mt.turns_mean),
                 "--session-turns-stddev", _num(mt.turns_stddev),
                 "--session-turn-delay-mean", _num(mt.delay_ms_mean)]
        if mt.sessions is not None:
            argv += ["--conversation-num", str(mt.sessions)]
    if w.images is not None:
        im = w.images
        argv += ["--image-batch-size", str(im.per_request), "--image-width-mean", str(im.width),
                 "--image-height-mean", str(im.height), "--image-format", im.format]
    if w.trace is not None:
        argv += ["--input-file", str(Path(w.trace.path).expanduser().resolve()),
                 "--custom-dataset-type", w.trace.format]
        if replay:
            argv.append("--fixed-schedule")
        elif timestamps:
            # a trace with timestamps is otherwise promoted to a fixed schedule by AIPerf
            argv.append("--no-fixed-schedule")
        if w.trace.block_size is not None:
            argv += ["--prompt-input-tokens-block-size", str(w.trace.block_size)]
    return argv


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _short_private_dir() -> Path:
    """A new private temporary directory with a short path.

    AIPerf puts its ZeroMQ IPC sockets under TMPDIR, and a Unix socket path may not exceed 107
    bytes, so TMPDIR cannot live deep inside a run folder.
    """
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="dbench-aiperf-", dir=base))


def run_aiperf(workload: WorkloadSpec, target: Target, run_dir: Path, *,
               timeout_s: float | None = None,
               on_tick: Callable[[float], None] | None = None,
               watch: Callable[[], None] | None = None) -> Path:
    """Run AIPerf for one load point; return its artifact directory (`run_dir/aiperf`).

    `on_tick(elapsed_s)` is called about four times a second while it runs (for progress);
    so is `watch()`, which raises to stop the run at once (a stack process that died): AIPerf
    is stopped and the exception propagates, with the records written so far left in place.

    Raises:
        AIPerfError: AIPerf failed, timed out, or wrote no `profile_export_aiperf.json`.
    """
    run_dir = Path(run_dir).resolve()  # AIPerf runs in run_dir: relative paths would nest
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts = run_dir / "aiperf"
    tmp = _short_private_dir()
    mmap = run_dir / "mmap"
    mmap.mkdir(exist_ok=True)
    env = {"TMPDIR": str(tmp), "AIPERF_DATASET_MMAP_BASE_PATH": str(mmap),
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    spec = ProcessSpec("aiperf", aiperf_argv(workload, target, artifacts), env,
                       run_dir / "aiperf.log", cwd=run_dir)
    proc = ManagedProcess(spec)
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if timeout_s is not None and elapsed > timeout_s:
                raise AIPerfError(f"aiperf did not finish within {timeout_s:.0f} s",
                                  proc.log_tail(30))
            if on_tick is not None:
                on_tick(elapsed)
            if watch is not None:
                watch()
            time.sleep(0.25)
    finally:
        stop_all([proc], grace_s=5.0)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(mmap, ignore_errors=True)
    code = proc.poll()
    if code != 0:
        raise AIPerfError(f"aiperf exited with status {code} (log: {spec.log_path})",
                          proc.log_tail(30))
    if not (artifacts / "profile_export_aiperf.json").is_file():
        raise AIPerfError(f"aiperf wrote no results in {artifacts}", proc.log_tail(30))
    return artifacts
