"""The public Python API. The CLI and the notebooks call these and nothing else.

    import dynamo_bench as db
    spec = db.load_deployment("serving/agg_kv.yaml")
    with db.serve(spec) as stack:
        print(stack.url, stack.ready_s)
        print(db.check_stack(stack))
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamo_bench.errors import DynamoBenchError, SpecError
from dynamo_bench.perf.models import CATALOGUE, catalogue_model, spelling_problem
from dynamo_bench.serving.k8s import dgd_manifest
import numpy as np
import pandas as pd

from dynamo_bench.loadgen.aiperf import Target
from dynamo_bench.loadgen.bench import (  # noqa: F401 (load_point is public)
    LoadKind,
    LoadPoint,
    Progress,
    load_point,
    summary_table,
)
from dynamo_bench.loadgen.bench import find_max_load as _find_max_load
from dynamo_bench.loadgen.bench import REQUESTS_PER_SLOT, StackDiedError, target_for
from dynamo_bench.loadgen.preflight import check_server, check_trace
from dynamo_bench.loadgen.bench import sweep as _sweep
from dynamo_bench.loadgen.search import SearchOutcome
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import Fit, memory_fit
from dynamo_bench.perf.roofline import BACKENDS, PRECISION_BYTES, Hardware
from dynamo_bench.loadgen.profiling import ProfilePlan, ProfileResult, profile_target
from dynamo_bench.perf.fit import fit_decode, fitted_tables
from dynamo_bench.perf.providers import WorkerQuery, chain_for, tables_from_chain
from dynamo_bench.perf.tables import TimingTables, save_tables
from dynamo_bench.serving.model_dir import resolve_model, write_model_dir
from dynamo_bench.serving.stack import Stack
from dynamo_bench.specs import (  # noqa: F401 (parse_sla is public)
    SLA,
    DeploymentSpec,
    WorkloadSpec,
    load_spec,
    parse_sla,
)
from dynamo_bench.specs import load_deployment as _load_deployment
from dynamo_bench.specs.loading import describe_validation_error
from dynamo_bench.report.best import Choice, answer_row
from dynamo_bench.report.best import choose as _choose
from dynamo_bench.report.files import Report, write_report
from dynamo_bench.report.pareto import front_table
from dynamo_bench.tune.records import StudyRecord
from dynamo_bench.tune.records import load_study as _load_record
from dynamo_bench.tune.sweep import SweepSpec
from dynamo_bench.tune.sweep_file import load_sweep as _load_sweep
from dynamo_bench.tune.sweep_file import parse_sweep
from dynamo_bench.specs.loading import read_yaml
from dynamo_bench.tune.tuner import OnTrial, TuneOptions
from dynamo_bench.tune.tuner import tune as _tune
from pydantic import ValidationError


def load_deployment(path: str | Path) -> DeploymentSpec:
    """Load and validate a deployment spec (raises `SpecError` with a one-line message)."""
    return _load_deployment(str(path))


def serve(spec: DeploymentSpec | str | Path, run_dir: str | Path | None = None,
          ready_timeout_s: float | None = None) -> Stack:
    """A `Stack` for `spec`, to be used as a context manager: launched and ready inside `with`,
    every process gone after it."""
    if not isinstance(spec, DeploymentSpec):
        spec = load_deployment(spec)
    return Stack(spec, run_dir=run_dir, ready_timeout_s=ready_timeout_s)


@dataclass(frozen=True)
class CheckResult:
    """What `check_stack` saw: one non-streaming and one streaming chat completion."""

    completion_tokens: int
    non_streaming_s: float
    stream_chunks: int
    stream_first_s: float
    stream_total_s: float
    text: str


def check_stack(stack: Stack, max_tokens: int = 16) -> CheckResult:
    """Send one non-streaming and one streaming chat completion with the `openai` client.

    Raises:
        DynamoBenchError: a request failed or came back empty.
    """
    import openai

    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="not-needed", max_retries=0,
                           timeout=30.0)
    messages: Any = [{"role": "user", "content": "Say something about serving LLMs."}]
    try:
        t0 = time.monotonic()
        resp = client.chat.completions.create(model=stack.model_name, messages=messages,
                                              max_tokens=max_tokens)
        non_streaming_s = time.monotonic() - t0
        tokens = resp.usage.completion_tokens if resp.usage else 0
        text = resp.choices[0].message.content or ""
        t0 = time.monotonic()
        first = None
        chunks = 0
        stream = client.chat.completions.create(model=stack.model_name, messages=messages,
                                                max_tokens=max_tokens, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                if first is None:
                    first = time.monotonic() - t0
        total = time.monotonic() - t0
    except openai.OpenAIError as e:
        raise DynamoBenchError(f"chat completion against {stack.url} failed: {e}") from None
    if tokens <= 0 or chunks == 0:
        raise DynamoBenchError(f"chat completion against {stack.url} returned no tokens "
                               f"(non-streaming: {tokens}, streaming chunks: {chunks})")
    return CheckResult(tokens, non_streaming_s, chunks, first or total, total, text)


def k8s_manifest(spec: DeploymentSpec, image: str | None = None,
                 namespace: str | None = None) -> dict[str, Any]:
    """The DynamoGraphDeployment manifest for `spec` (a dict; dump it with yaml)."""
    return dgd_manifest(spec, image=image, namespace=namespace)


def make_model_dir(name: str, dest: str | Path, tiny: bool = False) -> Path:
    """Write a catalogue model's directory (config.json, trained tokenizer, chat template);
    `tiny`: the architecture shrunk to 2 layers with random weights, which a real engine loads
    (serving/tiny.py)."""
    entry = catalogue_model(name)
    if entry is None:
        raise SpecError("NAME", f"{name!r} is not in the catalogue "
                        f"(choose from: {', '.join(CATALOGUE)})")
    target = Path(dest)
    if target.exists() and not target.is_dir():
        raise SpecError("DEST", f"{target} is a file: give a new or empty directory")
    if tiny:
        from dynamo_bench.serving.tiny import write_tiny_model

        return write_tiny_model(entry, target)
    return write_model_dir(entry, target)


def make_lora(model_dir: str | Path, dest: str | Path, rank: int = 8) -> Path:
    """Write a random LoRA adapter (PEFT format) for a tiny model made by `make_model_dir`."""
    from dynamo_bench.serving.tiny import write_tiny_lora

    base = Path(model_dir)
    if not (base / "model.safetensors").is_file():
        raise SpecError("MODEL_DIR", f"{base} holds no model.safetensors: make one with "
                        "`dynamo-bench model make NAME DIR --tiny`")
    target = Path(dest)
    if target.exists() and not target.is_dir():
        raise SpecError("DEST", f"{target} is a file: give a new or empty directory")
    return write_tiny_lora(base, target, rank=rank)


def external_target(url: str, model: str, tokenizer: str | Path | None = None,
                    gpus: int = 0) -> Target:
    """A target for a server you already run (any OpenAI-compatible URL).

    `tokenizer` is a local tokenizer directory; without it, `model` must be a catalogue name
    (its locally built tokenizer is used). The frontend's `/metrics` is used for the saturation
    check when the server has one.
    """
    base = url.rstrip("/").removesuffix("/v1")
    if tokenizer is None:
        if catalogue_model(model) is None:
            raise SpecError("tokenizer", f"model {model!r} is not in the catalogue: pass "
                            "--tokenizer DIR (a local tokenizer directory)")
        tokenizer = resolve_model(model)
    tok = Path(tokenizer)
    if not (tok / "tokenizer.json").is_file() and not (tok / "tokenizer_config.json").is_file():
        raise SpecError("tokenizer", f"{tok} holds no tokenizer (tokenizer.json)")
    return Target(url=base, model=model, tokenizer=tok, gpus=gpus, speedup_ratio=1.0,
                  metrics_url=f"{base}/metrics")


def load_workload(path: str | Path) -> WorkloadSpec:
    """Load and validate a workload spec (raises `SpecError` with a one-line message)."""
    return load_spec(WorkloadSpec, path)


@dataclass
class BenchResult:
    """What `bench` measured: every load point (probes, for a search) and the search outcome."""

    out_dir: Path
    points: list[LoadPoint]
    sla: SLA | None = None
    search: SearchOutcome[LoadPoint] | None = None

    def table(self) -> pd.DataFrame:
        """One row per load point (the summary.csv columns)."""
        return summary_table(self.points)


def bench(spec: DeploymentSpec | None, workload: WorkloadSpec, *,
          loads: list[tuple[LoadKind, float]], out: str | Path, sla: SLA | None = None,
          find_max_load: bool = False, max_load: float = 256, url: str | None = None,
          model: str | None = None, tokenizer: str | Path | None = None, gpus: int = 0,
          progress: Progress | None = None,
          requests_per_slot: float | None = REQUESTS_PER_SLOT) -> BenchResult:
    """Launch `spec` (or use `url`), measure `loads` with AIPerf (or search the highest load
    meeting `sla`), tear down, and write `out/summary.csv` plus one folder per load point.

    Before anything starts or is written, the trace file (if any) is read and checked, and a
    `url` must answer `/v1/models` with `model` among its models (`SpecError` otherwise). A
    concurrency c sends max(request_count, ceil(requests_per_slot x c)) requests (None: the
    workload's count at every load). If a stack process dies, the run stops at once:
    summary.csv holds the points measured so far (the one cut short with `valid=False`) and
    `StackDiedError` is raised with the dead process's log tail.

    Example:
        >>> r = bench(load_deployment("serving/agg.yaml"), load_workload(
        ...     "sweeps/workloads/chat.yaml"), loads=[("concurrency", 1), ("concurrency", 4)],
        ...     out="results/demo")                                  # doctest: +SKIP
        >>> r.table()[["concurrency", "ttft_ms_p90", "output_tok_s"]]  # doctest: +SKIP
    """
    out_dir = Path(out)
    if find_max_load and sla is None:
        raise SpecError("sla", "the load search needs an SLA")
    check_trace(workload)
    external = None
    if spec is None:
        check_server(url or "", model or "")
        external = external_target(url or "", model or "", tokenizer, gpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(spec, run_dir=out_dir / "stack") if spec is not None else None
    try:
        with stack if stack is not None else _nothing():
            target = target_for(stack) if stack is not None else external
            assert target is not None
            kwargs: dict[str, Any] = {
                "deployment": spec, "progress": progress, "requests_per_slot": requests_per_slot,
                "watch": stack.ensure_alive if stack is not None else None}
            if find_max_load:
                assert sla is not None
                kind, start = loads[0]
                outcome = _find_max_load(target, workload, sla, out_dir, kind=kind,
                                         start=start, limit=max_load, **kwargs)
                points = [p.result for p in outcome.probes]
                result = BenchResult(out_dir, points, sla, outcome)
            else:
                points = _sweep(target, workload, loads, out_dir, sla=sla, **kwargs)
                result = BenchResult(out_dir, points, sla)
    except StackDiedError as e:
        BenchResult(out_dir, e.points, sla).table().to_csv(out_dir / "summary.csv", index=False)
        raise
    result.table().to_csv(out_dir / "summary.csv", index=False)
    if result.search is not None:
        s = result.search
        (out_dir / "search.json").write_text(json.dumps({
            "sla": str(sla), "limited_by": s.limited_by,
            "best": None if s.best is None else str(s.best.result.run_dir),
            "above": None if s.above is None else str(s.above.result.run_dir),
            "probes": [{"load": p.load, "feasible": p.feasible, "usable": p.usable,
                        "run_dir": str(p.result.run_dir)} for p in s.probes]}, indent=2) + "\n")
    return result


@contextlib.contextmanager
def _nothing():  # type: ignore[no-untyped-def]
    yield None


@dataclass
class PerfReport:
    """The performance model's view of one worker (see `predict`)."""

    arch: ModelArch
    hardware: Hardware
    fit: Fit
    ttft_ms: dict[int, float]
    contexts: list[int]
    itl_ms: dict[int, list[float | None]]
    block_size: int
    tables: TimingTables | None = None
    """The worker's timing tables (None when it does not fit); `provenance` says which provider
    of the chain made them."""


def predict(model: str, gpu: str, *, tp: int = 1, pp: int = 1, backend: str = "vllm",
            precision: str = "bf16", block_size: int = 64, timing: str = "auto") -> PerfReport:
    """Fit verdict, KV capacity and predicted TTFT / ITL of `model` on one tp x pp worker,
    read from the timing tables the provider chain (`timing`) gives for it: the numbers the
    mocker and the replay run on.

    Example:
        >>> r = predict("Llama-3.1-70B", "h100_sxm", tp=4)
        >>> r.fit.fits, r.fit.num_gpu_blocks > 0
        (True, True)
    """
    if gpu not in GPUS:
        raise SpecError("--gpu", f"unknown GPU type {gpu!r} (known: {', '.join(GPUS)})")
    if backend not in BACKENDS:
        raise SpecError("--backend", f"unknown backend {backend!r} (choose from: "
                        f"{', '.join(BACKENDS)})")
    if precision not in PRECISION_BYTES:
        raise SpecError("--precision", f"{precision!r} is invalid (bf16 or fp8)")
    if tp < 1 or pp < 1:
        raise SpecError("--tp" if tp < 1 else "--pp", "tp and pp must be >= 1")
    if block_size < 1:
        raise SpecError("--block-size", f"{block_size} is invalid: must be >= 1")
    if timing not in ("auto", "roofline", "aiconfigurator") and not timing.endswith(".npz"):
        raise SpecError("--timing", f"{timing!r} is invalid: use auto, roofline, "
                        "aiconfigurator or a path to an .npz file")
    try:
        arch = ModelArch.of(model)  # only the config is needed
        problem = None if Path(model).expanduser().is_dir() else spelling_problem(model)
        if problem:
            raise SpecError("--model", problem)
    except SpecError as e:
        raise SpecError("--model", e.message) from None
    problem = arch.parallel_problem(tp, pp)
    if problem:
        raise SpecError("--pp" if problem.startswith("pp") else "--tp", problem)
    hw = Hardware(GPUS[gpu], tp=tp, pp=pp, precision=precision, backend=backend)  # type: ignore[arg-type]
    fit = memory_fit(arch, hw, block_size=block_size)
    if not fit.fits:
        return PerfReport(arch, hw, fit, {}, [], {}, block_size)
    q = WorkerQuery(model, arch, hw, kv_tokens=fit.kv_tokens,
                    max_context=min(131072, max(fit.kv_tokens, 1024)))
    tables = tables_from_chain(q, chain_for(timing), num_gpu_blocks=fit.num_gpu_blocks,
                               block_size=block_size)
    look = tables.lookup()
    ttft = {n: look.prefill_ms(n) for n in (128, 512, 2048, 8192, 32768)}
    contexts = [1024, 4096, 16384]
    itl: dict[int, list[float | None]] = {}
    for b in (1, 8, 32, 128):
        itl[b] = [look.decode_ms(b, c) if b * c <= max(fit.kv_tokens, 1) else None
                  for c in contexts]
    return PerfReport(arch, hw, fit, ttft, contexts, itl, block_size, tables)


def write_tables(report: PerfReport, out: str | Path) -> Path:
    """Write the report's worker timing tables (NPZ + provenance JSON) to `out`."""
    tables = report.tables
    if tables is None:
        raise DynamoBenchError(report.fit.reason)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tables.path, target)
    target.with_suffix(".json").write_text(json.dumps(tables.provenance, indent=2) + "\n")
    return target


@dataclass
class ProfileOutcome:
    """A profiling run: the measured points, the fitted tables and where they were written."""

    out_dir: Path
    tables_path: Path
    result: ProfileResult
    tables: dict[str, Any]
    baseline_tables: dict[str, Any] = field(default_factory=dict)
    """The tables the stack ran on while being profiled (the built-in model's), to compare."""

    def points(self) -> pd.DataFrame:
        """The measured points (points.csv): prefill TTFT by ISL, decode step by batch."""
        return pd.read_csv(self.out_dir / "points.csv")


def profile(spec: DeploymentSpec, out: str | Path, plan: ProfilePlan | None = None,
            progress: Progress | None = None) -> ProfileOutcome:
    """Measure one worker of `spec` live (prefill by input length, decode by batch and context)
    and fit timing tables from it: `out/tables.npz` (+ `tables.json`, `points.csv`).

    The first worker group is profiled on its own (one replica, aggregated). Point a spec's
    `timing:` at `out/tables.npz` to run the mocker or the replay on the measured tables. Tables
    measured on a real engine (not the mocker) are also registered in the cache, where the
    default timing chain (`timing: auto`) finds them for every spec with the same worker.
    """
    plan = plan or ProfilePlan()
    if len(set(plan.batches)) * len(set(plan.contexts)) < 3:
        raise SpecError("plan.batches", "the decode fit needs three or more (batch, context) "
                        "pairs: give more batches or contexts")
    if len(set(plan.isl)) < 2:
        raise SpecError("plan.isl", "the prefill fit needs two or more input lengths")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    role = spec.roles()[0]
    group = spec.workers[role].model_copy(update={"replicas": 1})
    single = spec.model_copy(update={"mode": "agg", "workers": {"agg": group},
                                     "router": spec.router.model_copy(update={"mode":
                                                                              "round-robin",
                                                                              "kv": None})})
    with Stack(single, run_dir=out_dir / "stack") as stack:
        target = target_for(stack)
        result = profile_target(target, plan, out_dir / "runs", progress=progress)
        stack.ensure_alive()
        base = stack.tables.get("agg")
    grids = base.load() if base is not None else {}
    isl_grid = grids.get("prefill_isl", np.geomspace(16, 131072, 28).round())
    active_grid = grids.get("decode_active_kv_tokens", np.geomspace(16, 400000, 22).round())
    ctx_grid = grids.get("decode_context_length", np.geomspace(16, 131072, 18).round())
    tables = fitted_tables(result.prefill, result.decode, isl_grid=isl_grid,
                           active_grid=active_grid, context_grid=ctx_grid)
    provenance = {"provider": "measured", "deployment": spec.name, "model": spec.model,
                  "gpu": spec.gpu, "backend": spec.backend, "tp": group.tp, "pp": group.pp,
                  "precision": spec.precision,
                  "num_gpu_blocks": base.num_gpu_blocks if base is not None else 0,
                  "prefill_points": [vars(p) for p in result.prefill],
                  "decode_points": [vars(p) for p in result.decode],
                  "decode_fit_ms": dict(zip(("per_step", "per_sequence", "per_kv_token"),
                                            fit_decode(result.decode)))}
    path = save_tables(tables, out_dir / "tables.npz", provenance)
    if spec.backend != "mocker":
        # a real engine's measurement: the default timing chain prefers it for this worker
        from dynamo_bench.perf.providers import register_measured
        from dynamo_bench.perf.timing import group_fit, worker_query

        arch = ModelArch.of(spec.model)
        register_measured(worker_query(single, "agg", arch, group_fit(single, "agg", arch)),
                          tables, provenance)
    rows = [{"kind": "prefill", "isl": p.isl, "ttft_ms": p.ttft_ms} for p in result.prefill] + \
        [{"kind": "decode", "batch": p.batch, "context": p.context, "itl_ms": p.itl_ms}
         for p in result.decode]
    pd.DataFrame(rows).to_csv(out_dir / "points.csv", index=False)
    return ProfileOutcome(out_dir, path, result, tables, baseline_tables=grids)


# -- tuning ----------------------------------------------------------------------------------

def load_sweep(path: str | Path) -> SweepSpec:
    """Load and validate a sweep file (raises `SpecError` with a one-line message)."""
    return _load_sweep(path)


def with_search(sweep: SweepSpec, *, sampler: str | None = None, seed: int | None = None
                ) -> SweepSpec:
    """`sweep` with another sampler and/or seed (validated like the file's own)."""
    data = sweep.model_dump(mode="json")
    if sampler is not None:
        data["search"]["sampler"] = sampler
    if seed is not None:
        data["search"]["seed"] = seed
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        e = describe_validation_error(SweepSpec, err)
        raise SpecError("--sampler" if "sampler" in e.field else e.field, e.message) from None


#: The columns of `TuningStudy.answers` (a selection of `report.best.answer_row`).
ANSWER_COLUMNS = ("tier", "sla", "config", "gpus", "concurrency", "predicted_tok_s_per_gpu",
                  "verified_tok_s_per_gpu", "verdict", "files")


@dataclass
class TuningStudy:
    """A study folder and its storage; every read goes back to the storage.

        study = db.tune("sweeps/quickstart.yaml", "results/quickstart")
        study.trials()           # one row per trial (DataFrame)
        study.pareto("batch")    # the load points on that tier's front
        study.best("batch")      # the answer: config, predicted and verified metrics
        study.report()           # (re)write trials.csv, pareto.png, best/<tier>/...
    """

    folder: Path
    storage: str | None = None

    def record(self) -> StudyRecord:
        """Everything the storage holds, as tables."""
        return _load_record(self.folder, self.storage)

    @property
    def tiers(self) -> list[str]:
        return list(self.record().slas)

    def trials(self, tier: str | None = None) -> pd.DataFrame:
        """One row per trial (exploration and live verification; `kind` tells which)."""
        t = self.record().trials
        return t[t["tier"] == tier] if tier is not None else t

    def points(self, tier: str | None = None) -> pd.DataFrame:
        """One row per load point measured, with `feasible` and `on_front`."""
        p = front_table(self.record().points)
        return p[p["tier"] == tier] if tier is not None else p

    def pareto(self, tier: str) -> pd.DataFrame:
        """The feasible points on `tier`'s front (exploration), by tok/s per user."""
        p = self.points(tier)
        return p[(p["kind"] == "explore") & p["on_front"]].sort_values("output_tok_s_per_user")

    def answers(self) -> pd.DataFrame:
        """One row per SLA tier: the answer, predicted and verified throughput, verdict."""
        record = self.record()
        rows = [answer_row(record, _choose(record, tier)) for tier in record.slas]
        return pd.DataFrame(rows, columns=list(ANSWER_COLUMNS))

    def best(self, tier: str) -> Choice:
        """The answer for `tier` (`Choice.best` is None when nothing met the SLA)."""
        return _choose(self.record(), tier)

    def report(self, html: bool = True) -> Report:
        """Write the study's files (tables, Pareto plot, best/<tier>/, report.html) from the
        storage."""
        return write_report(self.folder, storage=self.storage, html=html)


def tune(sweep: SweepSpec | str | Path, folder: str | Path | None = None, *,
         storage: str | None = None, trials: int | None = None, wall_s: float | None = None,
         verify: bool | None = None, peer: bool | None = None,
         on_trial: OnTrial | None = None, report: bool = True) -> TuningStudy:
    """Run (or resume) a tuning study and write its report; returns the study handle.

    `folder` defaults to results/<sweep name>; `storage` to SQLite in it. `trials`, `wall_s`
    and `verify` override the sweep's budget and fidelity for this run, `peer` its
    side by side with AIConfigurator (tune/peer.py).

    Example (replay only, a few seconds):
        >>> study = tune(sweep_from(trials=5, verify=False), "results/doc-example")
        >>> list(study.answers()["tier"])
        ['interactive', 'batch']
    """
    if not isinstance(sweep, SweepSpec):
        sweep = load_sweep(sweep)
    folder = Path(folder) if folder is not None else Path("results") / sweep.name
    _tune(sweep, folder, storage, TuneOptions(verify=verify, peer=peer, trials=trials,
                                              wall_s=wall_s, on_trial=on_trial))
    study = TuningStudy(folder, storage)
    if report:
        study.report()
    return study


def compare_with_aiconfigurator(sweep: SweepSpec | str | Path, tier: str | None = None,
                                study: str | Path | None = None) -> dict[str, Any]:
    """AIConfigurator's picks for a sweep's question, scored by dynamo-bench's evaluators
    (tune/peer.py), per tier (`tier`: one only). With `study` (a study folder of the same
    sweep), its answer is scored beside them. Returns {tier: PeerComparison}."""
    from dynamo_bench.tune.peer import compare

    if not isinstance(sweep, SweepSpec):
        sweep = load_sweep(sweep)
    tiers = list(sweep.slas())
    if tier is not None:
        if tier not in tiers:
            raise SpecError("--tier", f"{tier!r} is not a tier of {sweep.name} "
                            f"({', '.join(tiers)})")
        tiers = [tier]
    record = _load_record(study) if study is not None else None
    out: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="dbench-peer-"))
    try:
        for t in tiers:
            ours = label = None
            if record is not None:
                choice = _choose(record, t)
                if choice.best is not None:
                    ours = choice.best.record.spec()
                    label = str(choice.best.record.config)
            out[t] = compare(sweep, t, ours, label, scratch / t)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def load_study(folder: str | Path, storage: str | None = None) -> TuningStudy:
    """Open an existing study folder (`storage` for one kept in a shared database).

        study = load_study("results/quickstart")
        study.best("batch").best.record.config     # the answer, from the storage alone
    """
    folder = Path(folder)
    study = TuningStudy(folder, storage)
    study.record()  # fail now, with a clear message, if it is not a study
    return study


def sweep_from(base: str | Path | SweepSpec = "sweeps/quickstart.yaml", *,
               name: str | None = None, model: str | None = None, gpu: str | None = None,
               backend: str | None = None, gpus: int | None = None,
               workload: str | Path | dict[str, Any] | None = None,
               sla: dict[str, str] | None = None, trials: int | None = None,
               mode: list[str] | None = None, explore: str | None = None,
               verify: bool | None = None, peer: bool | None = None,
               **space: Any) -> SweepSpec:
    """A sweep file with the usual knobs replaced, validated like the file itself.

        sweep = db.sweep_from("sweeps/quickstart.yaml", model="Qwen3-8B", gpus=2,
                              sla={"chat": "ttft_ms.p90<=300,itl_ms.p90<=20"}, trials=20)

    `workload` is a workload file, or a mapping of `WorkloadSpec` fields to change in the
    base's workload (e.g. `{"isl": {"mean": 4096}}`); other keywords replace `space` entries
    (`tp=[1, 2]`, `block_size=[32]`); `peer` switches the side by side with AIConfigurator.
    Raises `SpecError` naming the argument on bad input.
    """
    if isinstance(base, SweepSpec):
        data, base_dir = base.model_dump(mode="json"), None
    else:
        base_dir = Path(base).parent
        data = read_yaml(base)
        if not isinstance(data, dict):
            raise SpecError("base", f"{base} is not a sweep file")
        if isinstance(data.get("workload"), str):
            data["workload"] = read_yaml(base_dir / data["workload"])
    data = json.loads(json.dumps(data))
    if name is not None:
        data["name"] = name
    for key, value in (("model", model), ("gpu", gpu), ("backend", backend)):
        if value is not None:
            data.setdefault("deployment", {})[key] = value
    if gpus is not None:
        data.setdefault("budget", {})["gpus"] = gpus
    if trials is not None:
        data.setdefault("budget", {})["trials"] = trials
    if workload is not None:
        if isinstance(workload, dict):
            data["workload"] = {**data.get("workload", {}), **workload}
        else:
            data["workload"] = read_yaml(workload)
    if sla is not None:
        data["sla"] = sla
    if mode is not None:
        data.setdefault("space", {})["mode"] = mode
    if explore is not None:
        data.setdefault("fidelity", {})["explore"] = explore
    if verify is not None:
        data.setdefault("fidelity", {})["verify"] = "live" if verify else "none"
    if peer is not None:
        data["peer"] = "aiconfigurator" if peer else "none"
    for key, value in space.items():
        data.setdefault("space", {})[key] = value
    return parse_sweep(data, base_dir=base_dir)
