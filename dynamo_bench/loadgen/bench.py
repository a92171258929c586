"""Measure load points with AIPerf and keep every run as a reloadable folder.

A run folder (one per load point) holds AIPerf's own artifacts (`aiperf/`), the resolved
workload (`workload.yaml`) and deployment (`deployment.yaml`, when known), the per-request table
(`requests.parquet`) and `metrics.json` (schema-versioned `Metrics` plus the server-side figures
and the saturation verdict). `load_point(folder)` reloads it without rerunning anything.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml

from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.loadgen import prometheus
from dynamo_bench.loadgen.aiperf import AIPerfError, Target, run_aiperf
from dynamo_bench.loadgen.artifacts import (
    RECORDS,
    SUMMARY,
    client_means,
    safe_div,
    summarize,
)
from dynamo_bench.loadgen.search import Probe, SearchOutcome, search_max_load
from dynamo_bench.serving.stack import Stack, WorkerDiedError
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.metrics import METRICS_SCHEMA_VERSION, Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.specs.workload import WorkloadSpec

LoadKind = Literal["concurrency", "request_rate"]
#: Called while AIPerf runs: (load point label, elapsed seconds, requests finished so far).
Progress = Callable[[str, float, int], None]
#: Requests per unit of concurrency in a closed-loop load point (at least the workload's
#: request_count), as `tune` sends them (tune/sweep.py: `LoadSearch.requests_per_slot`).
REQUESTS_PER_SLOT = 8.0


class StackDiedError(DynamoBenchError):
    """A stack process died while load points were measured; the run stopped at once.

    `points` are those measured so far, in order; the last one, measured while the process
    died, is marked invalid (`valid=False`). `tails` maps each dead process to its log tail.
    """

    def __init__(self, cause: WorkerDiedError, label: str, points: list[LoadPoint]) -> None:
        self.exits = cause.exits
        self.tails = cause.tails
        self.label = label
        self.points = points
        names = ", ".join(f"{n} (exit {c})" for n, c in cause.exits.items())
        super().__init__(f"stack process died during {label}: {names}; the run was stopped")

    def __str__(self) -> str:
        text = self.args[0]
        for name, tail in self.tails.items():
            text += f"\n--- last lines of {name}'s log ---\n{tail.rstrip()}"
        return text


@dataclass(frozen=True)
class SaturationPolicy:
    """When is the load client, not the server, limiting a run?

    The client's mean TTFT (ITL) is compared with the frontend's server-side mean over the same
    run; a run is flagged when the client's figure exceeds the server's by more than
    `abs_ms + rel x server` for either. A healthy client adds a few ms of HTTP and parsing to
    TTFT and almost nothing to ITL; a saturated one adds queueing to both.
    """

    ttft_abs_ms: float = 10.0
    ttft_rel: float = 0.2
    itl_abs_ms: float = 0.5
    itl_rel: float = 0.1

    def check(self, client_ttft_ms: float | None, client_itl_ms: float | None,
              server: prometheus.ServerLatency | None) -> tuple[bool | None, str | None]:
        """(saturated, reason). (None, reason) when there is nothing to compare with."""
        if server is None or server.ttft_ms_mean is None:
            return None, "no server-side metrics to compare with"
        reasons = []
        if client_ttft_ms is not None:
            limit = self.ttft_abs_ms + self.ttft_rel * server.ttft_ms_mean
            if client_ttft_ms - server.ttft_ms_mean > limit:
                reasons.append(f"client TTFT mean {client_ttft_ms:.1f} ms vs server "
                               f"{server.ttft_ms_mean:.1f} ms")
        if client_itl_ms is not None and server.itl_ms_mean is not None:
            limit = self.itl_abs_ms + self.itl_rel * server.itl_ms_mean
            if client_itl_ms - server.itl_ms_mean > limit:
                reasons.append(f"client ITL mean {client_itl_ms:.2f} ms vs server "
                               f"{server.itl_ms_mean:.2f} ms")
        return (True, "; ".join(reasons)) if reasons else (False, None)


@dataclass
class LoadPoint:
    """One measured load point: its metrics, per-request table and run folder."""

    metrics: Metrics
    requests: pd.DataFrame
    run_dir: Path
    workload: WorkloadSpec
    aiperf_started_ns: int | None = None
    aiperf_ended_ns: int | None = None
    valid: bool = True
    """False when a stack process died during the run (the figures describe a degraded
    stack, or a run cut short); `invalid_reason` says why."""
    invalid_reason: str | None = None

    @property
    def label(self) -> str:
        return load_label(self.workload)


def load_label(workload: WorkloadSpec) -> str:
    """`c=16` for a concurrency, `4 req/s` for a rate."""
    if workload.request_rate is not None:
        return f"{workload.request_rate:g} req/s"
    return f"c={workload.concurrency}"


def run_folder_name(workload: WorkloadSpec) -> str:
    if workload.request_rate is not None:
        return f"rate_{workload.request_rate:g}"
    return f"concurrency_{workload.concurrency:04d}"


def measure(target: Target, workload: WorkloadSpec, out_dir: Path, *, sla: SLA | None = None,
            deployment: DeploymentSpec | None = None,
            policy: SaturationPolicy = SaturationPolicy(),
            progress: Progress | None = None, timeout_s: float | None = None,
            watch: Callable[[], None] | None = None) -> LoadPoint:
    """Run AIPerf at `workload`'s load against `target` and write the run folder `out_dir`.

    Under a concurrency with no `ramp_s` given, the first requests start spread over about one
    request's predicted duration (`ramp_seconds`).

    `watch` (e.g. `Stack.ensure_alive`) is called while AIPerf runs and once after: when it
    raises `WorkerDiedError`, AIPerf is stopped at once, the point is written marked invalid
    with the requests recorded so far, and `StackDiedError` is raised carrying it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if workload.concurrency and workload.ramp_s is None and workload.request_rate is None:
        workload = workload.model_copy(update={"ramp_s": ramp_seconds(
            workload, deployment, target.speedup_ratio)})
    (out_dir / "workload.yaml").write_text(yaml.safe_dump(workload.model_dump(mode="json"),
                                                          sort_keys=False))
    if deployment is not None:
        (out_dir / "deployment.yaml").write_text(yaml.safe_dump(
            deployment.model_dump(mode="json", exclude_none=True),
            sort_keys=False))
    label = load_label(workload)
    before = prometheus.scrape(target.metrics_url) if target.metrics_url else None
    records = out_dir / "aiperf" / RECORDS

    def tick(elapsed: float) -> None:
        if progress is not None:
            progress(label, elapsed, _count_lines(records))

    started_ns = time.time_ns()
    try:
        try:
            artifacts = run_aiperf(workload, target, out_dir, timeout_s=timeout_s,
                                   on_tick=tick, watch=watch)
        except AIPerfError:
            # AIPerf often fails within moments of a dead server: say which process died
            if watch is not None:
                watch()
            raise
        if watch is not None:
            watch()
    except WorkerDiedError as e:
        point = _degraded_point(target, workload, out_dir, sla, started_ns, e)
        raise StackDiedError(e, label, [point] if point is not None else []) from None
    ended_ns = time.time_ns()
    after = prometheus.scrape(target.metrics_url) if target.metrics_url else None
    server = prometheus.server_latency(before, after) if before and after else None
    metrics, requests = summarize(artifacts, gpus=target.gpus, concurrency=workload.concurrency,
                                  request_rate=workload.request_rate, sla=sla,
                                  speedup_ratio=target.speedup_ratio)
    s = target.speedup_ratio
    # the server's histograms cover the whole run: compare them with the whole run's means
    ttft_all, itl_all = client_means(requests)
    saturated, reason = policy.check(safe_div(ttft_all, s), safe_div(itl_all, s), server)
    update: dict[str, object] = {"client_saturated": saturated, "saturation_reason": reason}
    if server is not None:
        update["server_ttft_ms_mean"] = _mul(server.ttft_ms_mean, s)
        update["server_itl_ms_mean"] = _mul(server.itl_ms_mean, s)
        if server.roundtrip_ttft_ms_mean is not None and ttft_all \
                and not target.disaggregated:
            # Wall-time TTFT spent outside the engine (HTTP, tokenisation, routing); with a
            # speed-up, rescaling multiplied it by the ratio along with the engine time.
            update["overhead_ms"] = max(0.0, ttft_all / s - server.roundtrip_ttft_ms_mean)
    metrics = metrics.model_copy(update=update)
    point = LoadPoint(metrics, requests, out_dir, workload, started_ns, ended_ns)
    _write(point, server)
    return point


def _degraded_point(target: Target, workload: WorkloadSpec, out_dir: Path, sla: SLA | None,
                    started_ns: int, died: WorkerDiedError) -> LoadPoint | None:
    """The point cut short by a dead stack process, from the records AIPerf wrote before it
    was stopped (finished or not), marked invalid; None when nothing can be made of them."""
    names = ", ".join(f"{n} (exit {c})" for n, c in died.exits.items())
    try:
        metrics, requests = summarize(out_dir / "aiperf", gpus=target.gpus,
                                      concurrency=workload.concurrency,
                                      request_rate=workload.request_rate, sla=sla,
                                      speedup_ratio=target.speedup_ratio,
                                      partial=not (out_dir / "aiperf" / SUMMARY).is_file())
    except Exception:  # noqa: BLE001 (no records, or too few: there is no point to keep)
        return None
    point = LoadPoint(metrics, requests, out_dir, workload, started_ns, time.time_ns(),
                      valid=False, invalid_reason=f"stack process died during the run: {names}")
    _write(point, None)
    return point


def target_for(stack: Stack) -> Target:
    """The load target of a running stack: its URL, model, tokenizer, GPUs and speed-up."""
    spec = stack.spec
    tokenizer = Path(stack.model_path or spec.model)
    return Target(url=stack.url, model=stack.model_name, tokenizer=tokenizer, gpus=spec.gpus,
                  speedup_ratio=spec.speedup_ratio, metrics_url=f"{stack.url}/metrics",
                  disaggregated=spec.mode == "disagg")


#: Start spread when no prediction exists (`bench --url`, `timing: mocker-default`), per slot.
RAMP_PER_SLOT_S = 0.025


def ramp_seconds(workload: WorkloadSpec, deployment: DeploymentSpec | None,
                 speedup_ratio: float = 1.0) -> float:
    """How long to spread the first `concurrency` starts over, in wall seconds: one request's
    predicted duration at that load (so that later requests start as spread as in steady
    state), within [0.2 s, 30 s]; 25 ms per slot without a prediction."""
    c = workload.concurrency or 1
    predicted = None
    if deployment is not None and workload.prompt_tokens is not None and workload.osl:
        from dynamo_bench.perf.timing import request_seconds

        predicted = request_seconds(deployment, workload.prompt_tokens, workload.osl.mean, c)
    if predicted is None:
        return round(min(30.0, RAMP_PER_SLOT_S * c), 3)
    return round(min(30.0, max(0.2, predicted / speedup_ratio)), 3)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _mul(x: float | None, m: float) -> float | None:
    return None if x is None else x * m


def _write(point: LoadPoint, server: prometheus.ServerLatency | None) -> None:
    doc = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "label": point.label,
        "metrics": point.metrics.model_dump(mode="json"),
        "server": None if server is None else {
            "ttft_ms_mean": server.ttft_ms_mean, "itl_ms_mean": server.itl_ms_mean,
            "roundtrip_ttft_ms_mean": server.roundtrip_ttft_ms_mean,
            "requests": server.requests},
        "aiperf_dir": "aiperf",
        "aiperf_started_ns": point.aiperf_started_ns,
        "aiperf_ended_ns": point.aiperf_ended_ns,
        "valid": point.valid,
        "invalid_reason": point.invalid_reason,
    }
    (point.run_dir / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    point.requests.to_parquet(point.run_dir / "requests.parquet", index=False)


def load_point(run_dir: str | Path) -> LoadPoint:
    """Reload a run folder written by `measure` (no rerun)."""
    run = Path(run_dir)
    try:
        doc = json.loads((run / "metrics.json").read_text())
    except FileNotFoundError:
        raise DynamoBenchError(f"{run} has no metrics.json (not a dynamo-bench run folder)")
    version = doc.get("schema_version")
    if version != METRICS_SCHEMA_VERSION:
        raise DynamoBenchError(f"{run}/metrics.json has schema version {version}; this "
                               f"dynamo-bench reads version {METRICS_SCHEMA_VERSION}")
    workload = WorkloadSpec.model_validate(yaml.safe_load((run / "workload.yaml").read_text()))
    requests = pd.read_parquet(run / "requests.parquet")
    return LoadPoint(Metrics.model_validate(doc["metrics"]), requests, run, workload,
                     doc.get("aiperf_started_ns"), doc.get("aiperf_ended_ns"),
                     doc.get("valid", True), doc.get("invalid_reason"))


def sweep(target: Target, workload: WorkloadSpec, loads: Sequence[tuple[LoadKind, float]],
          out_dir: Path, *, requests_per_slot: float | None = None,
          **kwargs: object) -> list[LoadPoint]:
    """Measure `workload` at each load, in order, on the same running server.

    Each load point gets its own seed (`workload.seed + index`): the same seed would resend the
    same prompts, which the server's prefix cache then serves without prefill. With
    `requests_per_slot`, a concurrency c sends at least that many requests per slot
    (`scaled_workload`). A dead stack process (`watch`) raises `StackDiedError` carrying every
    point measured so far.
    """
    points: list[LoadPoint] = []
    for i, (kind, value) in enumerate(loads):
        w = _at(workload, kind, value, i, requests_per_slot)
        try:
            points.append(measure(target, w, out_dir / run_folder_name(w), **kwargs))  # type: ignore[arg-type]
        except StackDiedError as e:
            e.points = points + e.points
            raise
    return points


def scaled_workload(workload: WorkloadSpec, requests_per_slot: float | None) -> WorkloadSpec:
    """`workload` with max(request_count, ceil(requests_per_slot x concurrency)) requests, as
    `tune` sizes its probes, so that every slot sends several requests at any concurrency.
    Unchanged for a rate, a duration or a trace (the trace defines the requests)."""
    count = workload.effective_request_count
    if requests_per_slot is None or workload.concurrency is None or count is None \
            or workload.request_rate is not None or workload.trace is not None:
        return workload
    return workload.model_copy(update={"request_count": max(count, math.ceil(
        requests_per_slot * workload.concurrency))})


def _at(workload: WorkloadSpec, kind: LoadKind, value: float, index: int,
        requests_per_slot: float | None = None) -> WorkloadSpec:
    w = workload.at(concurrency=int(value)) if kind == "concurrency" \
        else workload.at(request_rate=float(value))
    return scaled_workload(w.model_copy(update={"seed": workload.seed + index}),
                           requests_per_slot)


def find_max_load(target: Target, workload: WorkloadSpec, sla: SLA, out_dir: Path, *,
                  kind: LoadKind = "concurrency", start: float = 1, limit: float = 256,
                  max_probes: int | None = None, requests_per_slot: float | None = None,
                  **kwargs: object) -> SearchOutcome[LoadPoint]:
    """The highest load whose metrics meet `sla`: bracket by doubling, then bisect (to
    adjacent concurrencies, or 2% for rates; the probe budget is derived unless given).

    A probe whose client saturated (or that failed entirely) stops the search: the boundary
    above it cannot be measured on this machine, and `limited_by` says so.
    """
    if kind == "concurrency" and workload.request_rate is not None:
        workload = workload.at(concurrency=workload.concurrency)

    probes = 0
    measured: list[LoadPoint] = []

    def evaluate(x: float) -> Probe[LoadPoint]:
        nonlocal probes
        w = _at(workload, kind, x, probes, requests_per_slot)
        probes += 1
        try:
            point = measure(target, w, out_dir / run_folder_name(w), sla=sla, **kwargs)  # type: ignore[arg-type]
        except StackDiedError as e:
            e.points = measured + e.points
            raise
        measured.append(point)
        return Probe(x, sla.feasible(point.metrics), point.metrics.usable, point)

    return search_max_load(evaluate, start=start, limit=limit, integer=kind == "concurrency",
                           max_probes=max_probes)


def summary_table(points: Sequence[LoadPoint]) -> pd.DataFrame:
    """One row per load point; the column names `bench` writes to summary.csv."""
    rows = []
    for p in points:
        m = p.metrics
        rows.append({"concurrency": m.concurrency, "request_rate": m.request_rate,
                     "request_count": p.workload.effective_request_count,
                     **{k: v for k, v in m.to_row().items()
                        if k not in ("concurrency", "request_rate")},
                     "valid": p.valid, "invalid_reason": p.invalid_reason,
                     "run_dir": str(p.run_dir)})
    df = pd.DataFrame(rows)
    front = ["concurrency", "request_rate", "request_count", "ttft_ms_p50", "ttft_ms_p90",
             "itl_ms_p50", "itl_ms_p90", "e2e_ms_p90", "output_tok_s", "output_tok_s_per_gpu",
             "output_tok_s_per_user", "client_saturated", "valid"]
    return df[front + [c for c in df.columns if c not in front]] if rows else df

