"""The `dynamo-bench` command. Thin: every command is a call into the library.

Errors a user can fix print one line and exit 2; run-time failures (a stack that will not start,
a worker that dies) exit 1 with the log tail; `--debug` shows tracebacks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from dynamo_bench.errors import DynamoBenchError, LaunchError, SpecError, UserError

# The click that typer ships (its own copy since typer 0.2x, else the click package).
try:
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as _click_errors  # type: ignore[no-redef]

_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _examples(*lines: str) -> str:
    """A help epilog listing example command lines (blank lines keep them apart)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings=_CONTEXT, help="Benchmark and tune NVIDIA Dynamo deployments.")
model_app = typer.Typer(no_args_is_help=True, context_settings=_CONTEXT,
                        help="Local model directories.")
app.add_typer(model_app, name="model")
engine_app = typer.Typer(no_args_is_help=True, context_settings=_CONTEXT,
                         help="Engine environments (vLLM, SGLang, TensorRT-LLM) for real workers.")
app.add_typer(engine_app, name="engine")
notebook_app = typer.Typer(no_args_is_help=True, context_settings=_CONTEXT,
                           help="The notebooks in notebooks/ (papermill).")
app.add_typer(notebook_app, name="notebook")
# Tables are wide: do not wrap them at 80 columns when output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        def v(dist: str) -> str:
            try:
                return version(dist)
            except PackageNotFoundError:
                return "not installed"

        print(f"dynamo-bench {v('dynamo-bench')} (ai-dynamo {v('ai-dynamo')}, "
              f"aiperf {v('aiperf')}, optuna {v('optuna')})")
        raise typer.Exit(0)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the versions and exit.")] = False,
          ) -> None:
    """Benchmark and tune NVIDIA Dynamo deployments.

    Start with `dynamo-bench tune sweeps/quickstart.yaml`; every command has examples in its
    `--help`.
    """


@app.command(epilog=_examples('dynamo-bench serve serving/agg.yaml --check', 'dynamo-bench serve results/quickstart/best/batch/deployment.yaml', 'dynamo-bench serve serving/disagg_1p1d.yaml --k8s --out dgd.yaml --namespace llm'))
def serve(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Deployment spec.")],
    check: Annotated[bool, typer.Option(help="Launch, send one streaming and one non-streaming "
                                        "chat completion, tear down.")] = False,
    k8s: Annotated[bool, typer.Option("--k8s", help="Write the DynamoGraphDeployment manifest "
                                      "instead of launching.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="With --k8s: file to write (default: "
                                                "stdout).")] = None,
    image: Annotated[Optional[str], typer.Option(help="With --k8s: container image.")] = None,
    namespace: Annotated[Optional[str], typer.Option(help="With --k8s: namespace.")] = None,
    logs: Annotated[Optional[Path], typer.Option(help="Keep logs and state in this folder.")] = None,
    duration: Annotated[Optional[float], typer.Option(min=0.1, help="Stop after this many "
                                                      "seconds.")] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Start-up deadline, "
                                                     "seconds.")] = None,
) -> None:
    """Run a deployment in the foreground (Ctrl-C stops it), check it, or write its manifest."""
    from dynamo_bench import api

    if k8s and out is not None:
        _file_path(out, "--out")
    if logs is not None:
        _folder_path(logs, "--logs")
    spec = api.load_deployment(spec_path)
    if k8s:
        text = yaml.safe_dump(api.k8s_manifest(spec, image=image, namespace=namespace),
                              sort_keys=False)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            err_console.print(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return
    try:
        stack = api.serve(spec, run_dir=logs, ready_timeout_s=timeout).start()
    except SpecError as e:  # raised at launch (model files): say which spec file it was
        raise SpecError(e.field, e.message, e.source or str(spec_path)) from None
    with stack:
        _print_stack(stack)
        if check:
            result = api.check_stack(stack)
            console.print(f"non-streaming: {result.completion_tokens} tokens in "
                          f"{result.non_streaming_s * 1000:.0f} ms; streaming: "
                          f"{result.stream_chunks} chunks, first after "
                          f"{result.stream_first_s * 1000:.0f} ms")
        else:
            console.print("serving; Ctrl-C stops", style="bold")
            _watch(stack, duration)
    console.print(f"stopped in {stack.teardown_s:.2f} s")
    if check:
        console.print(f"[green]check passed[/green]: ready in {stack.ready_s:.2f} s")


def _folder_path(path: Path, flag: str) -> None:
    """Refuse an output folder that is a file (or lies under one) before anything starts."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise SpecError(flag, f"{p} is a file: give a folder")
            return


def _file_path(path: Path, flag: str) -> None:
    """Refuse an output file that is a folder (or lies under a file) before anything starts."""
    if path.is_dir():
        raise SpecError(flag, f"{path} is a folder: give a file name, e.g. {path / 'out'}")
    _folder_path(path.parent, flag)


def _print_stack(stack) -> None:  # type: ignore[no-untyped-def]
    console.print(f"[bold]{stack.spec.name}[/bold] ready in {stack.ready_s:.2f} s")
    console.print(f"url:   {stack.url}/v1")
    console.print(f"model: {stack.model_name}")
    table = Table("process", "pid", "gpus", "log", box=None)
    for p in stack.processes():
        table.add_row(p.name, str(p.pid), ",".join(p.gpus) or "-", str(p.log_path))
    console.print(table)


def _watch(stack, duration: float | None) -> None:  # type: ignore[no-untyped-def]
    end = None if duration is None else time.monotonic() + duration
    try:
        while end is None or time.monotonic() < end:
            stack.ensure_alive()
            time.sleep(0.25)
    except KeyboardInterrupt:
        console.print("interrupted; stopping")


def _numbers(text: str | None, field: str, integer: bool) -> list[float]:
    if not text:
        return []
    out: list[float] = []
    for part in text.split(","):
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            kind = "integers" if integer else "numbers"
            raise SpecError(field, f"{part.strip()!r} is invalid: give comma-separated {kind}, "
                            "e.g. 1,4,16") from None
        if value <= 0:
            raise SpecError(field, f"{part.strip()} is invalid: must be > 0")
        out.append(value)
    return out


@app.command(epilog=_examples('dynamo-bench bench serving/agg.yaml -w sweeps/workloads/chat.yaml --concurrency 1,4,16', "dynamo-bench bench serving/agg.yaml -w sweeps/workloads/chat.yaml --sla 'ttft_ms.p90<=500' --find-max-load", 'dynamo-bench bench --url http://127.0.0.1:8000 --model Qwen3-8B -w sweeps/workloads/chat.yaml'))
def bench(
    spec_path: Annotated[Optional[Path], typer.Argument(metavar="[SPEC.yaml]",
                                                        help="Deployment to launch.")] = None,
    workload_path: Annotated[Optional[Path], typer.Option("--workload", "-w",
                                                          help="Workload spec.")] = None,
    concurrency: Annotated[Optional[str], typer.Option(help="Load points, e.g. 1,4,16.")] = None,
    request_rate: Annotated[Optional[str], typer.Option(help="Open-loop rates (req/s), "
                                                        "e.g. 2,4,8.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder.")] = None,
    sla: Annotated[Optional[str], typer.Option(help='e.g. "ttft_ms.p90<=500,itl_ms.p90<=25".')
                   ] = None,
    find_max_load: Annotated[bool, typer.Option(help="Search the highest load meeting --sla."
                                                )] = False,
    max_load: Annotated[float, typer.Option(min=1, help="Highest load the search may try.")
                        ] = 256,
    url: Annotated[Optional[str], typer.Option(help="Load this running server instead.")] = None,
    model: Annotated[Optional[str], typer.Option(help="With --url: the served model name.")
                     ] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="With --url: tokenizer directory.")
                         ] = None,
    gpus: Annotated[int, typer.Option(help="With --url: GPUs behind it (per-GPU figures).")] = 0,
    requests_per_slot: Annotated[float, typer.Option(
        min=0.001, help="A concurrency c sends max(request_count, c x this) requests, as tune "
        "does.")] = 8.0,
) -> None:
    """Load a deployment (or --url) with AIPerf at one or more load points, or search the
    highest load that meets an SLA; print a table and write summary.csv."""
    from dynamo_bench import api

    if workload_path is None:
        raise SpecError("--workload", "is required (e.g. --workload sweeps/workloads/chat.yaml)")
    workload = api.load_workload(workload_path)
    sla_spec = api.parse_sla(sla, field="--sla") if sla else None
    if find_max_load and sla_spec is None:
        raise SpecError("--sla", "is required with --find-max-load")
    conc = _numbers(concurrency, "--concurrency", integer=True)
    rates = _numbers(request_rate, "--request-rate", integer=False)
    if conc and rates:
        raise SpecError("--request-rate", "give --concurrency or --request-rate, not both")
    if (spec_path is None) == (url is None):
        raise SpecError("SPEC.yaml", "give a deployment spec to launch, or --url to load a "
                        "running server (not both)")
    spec = api.load_deployment(spec_path) if spec_path else None
    if url is not None and not model:
        raise SpecError("--model", "is required with --url")
    name = spec.name if spec else "external"
    if out is not None:
        _folder_path(out, "--out")
    out_dir = out or Path("results") / f"bench-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    kind = "request_rate" if rates else "concurrency"
    loads = [(kind, v) for v in (rates or conc)]
    if not loads:
        loads = [("request_rate", workload.request_rate)] if workload.concurrency is None \
            else [("concurrency", workload.concurrency)]
    try:
        with _progress() as progress:
            result = api.bench(spec, workload, loads=loads, out=out_dir, sla=sla_spec,
                               find_max_load=find_max_load, max_load=max_load, url=url,
                               model=model, tokenizer=tokenizer, gpus=gpus, progress=progress,
                               requests_per_slot=requests_per_slot)
    except api.StackDiedError as e:  # show what was measured, then fail with the log tail
        _print_bench(api.BenchResult(out_dir, e.points, sla_spec))
        raise
    _print_bench(result)


class _progress:
    """Progress while AIPerf runs: on a terminal a rich line per load point (elapsed time,
    requests done); elsewhere one plain line when a load point starts."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.live = err_console.is_terminal
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                            TimeElapsedColumn(), TextColumn("{task.fields[done]} requests"),
                            console=err_console, transient=True, disable=not self.live)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}
        self.start = time.monotonic()
        return self

    def __call__(self, label: str, elapsed: float, done: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(f"aiperf {label}", done=0)
            if not self.live:
                err_console.print(f"[{time.monotonic() - self.start:6.0f} s] aiperf {label}",
                                  markup=False, highlight=False)
        self.bar.update(self.tasks[label], done=done)

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        return self.bar.__exit__(*exc)


def _fmt(x: object, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "YES" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _print_bench(result) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"{result.out_dir}", box=None)
    cols = ["load", "requests", "ttft p50", "ttft p90", "itl p50", "itl p90", "e2e p90", "out tok/s",
            "tok/s/gpu", "tok/s/user", "errors", "client saturated"]
    if result.sla is not None:
        cols.append(f"meets {result.sla}")
    for c in cols:
        table.add_column(c, justify="right")
    for p in result.points:
        m = p.metrics
        row = [p.label, str(m.requests), _fmt(m.ttft_ms_p50), _fmt(m.ttft_ms_p90), _fmt(m.itl_ms_p50, 2),
               _fmt(m.itl_ms_p90, 2), _fmt(m.e2e_ms_p90), _fmt(m.output_tok_s),
               _fmt(m.output_tok_s_per_gpu), _fmt(m.output_tok_s_per_user), str(m.errors),
               "?" if m.client_saturated is None else _fmt(m.client_saturated)]
        if result.sla is not None:
            row.append(_fmt(result.sla.feasible(m)))
        table.add_row(*row, style="red" if m.client_saturated or not p.valid else None)
    console.print(table)
    if any(p.metrics.time_base == "simulated" for p in result.points):
        m = result.points[0].metrics
        console.print(f"mocker speed-up {m.speedup_ratio:g}: latencies rescaled to simulated "
                      f"time; measured non-engine overhead {_fmt(m.overhead_ms, 1)} ms (wall) "
                      "is multiplied by the speed-up in these figures")
    for p in result.points:
        if not p.valid:
            console.print(f"[red]{p.label}: INVALID ({p.invalid_reason}); kept in summary.csv "
                          "with valid=False[/red]")
        if p.metrics.client_saturated:
            console.print(f"[red]{p.label}: load client saturated ({p.metrics.saturation_reason})"
                          "; not usable as a result[/red]")
    if result.search is not None:
        s = result.search
        if s.best is None:
            console.print(f"[red]no load meets {result.sla} ({s.limited_by})[/red]")
        else:
            m = s.best.result.metrics
            above = f"; {s.above.result.label} does not" if s.above is not None else ""
            console.print(f"[bold]max load meeting {result.sla}: {s.best.result.label}[/bold] "
                          f"({_fmt(m.output_tok_s_per_gpu)} output tok/s/GPU){above}; "
                          f"stopped by: {s.limited_by}; {len(s.probes)} probes")
    console.print(f"wrote {result.out_dir / 'summary.csv'}")


@app.command(epilog=_examples('dynamo-bench tune sweeps/quickstart.yaml', 'dynamo-bench tune sweeps/quickstart.yaml --trials 20 --no-verify --out results/try'))
def tune(
    sweep_path: Annotated[Path, typer.Argument(metavar="SWEEP.yaml", help="Sweep file "
                                               "(see sweeps/).")],
    out: Annotated[Optional[Path], typer.Option(help="Study folder (default: results/NAME). "
                                                "An existing study there is resumed.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="sqlite (default), journal, "
                                                   "journal:PATH or a database URL shared by "
                                                   "several tuners.")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="Exploration trials per SLA "
                                                  "tier (overrides budget.trials).")] = None,
    wall: Annotated[Optional[float], typer.Option(min=1, help="Exploration wall-time limit, "
                                                  "seconds (overrides budget.wall_s).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="tpe | nsga2 | gp | random.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed.")] = None,
    verify: Annotated[Optional[bool], typer.Option("--verify/--no-verify", help="Verify each "
                                                   "tier's best candidates live (default: "
                                                   "fidelity.verify).")] = None,
    peer: Annotated[Optional[bool], typer.Option("--peer/--no-peer", help="Score "
                                                 "AIConfigurator's picks beside the answer "
                                                 "(default: the sweep's peer).")] = None,
) -> None:
    """Search the sweep's space under each SLA tier, verify the best live, write the report."""
    from dynamo_bench import api

    sweep = api.load_sweep(sweep_path)
    if sampler is not None or seed is not None:
        sweep = api.with_search(sweep, sampler=sampler, seed=seed)
    if out is not None:
        _folder_path(out, "--out")
    folder = out or Path("results") / sweep.name
    try:
        with _TuneProgress() as progress:
            study = api.tune(sweep, folder, storage=storage, trials=trials, wall_s=wall,
                             verify=verify, peer=peer, on_trial=progress, report=False)
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM: the running trial was re-queued
        print(str(e) or "interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    rep = study.report()
    record = study.record()
    _print_report(rep)
    _print_peers(record)
    _print_next(rep, record)


@app.command("peer", epilog=_examples('dynamo-bench peer sweeps/peer-llama70b-h100.yaml --tier interactive'))
def peer_command(
    sweep_path: Annotated[Path, typer.Argument(metavar="SWEEP.yaml", help="Sweep file "
                                               "(see sweeps/).")],
    tier: Annotated[Optional[str], typer.Option(help="One SLA tier only.")] = None,
    study: Annotated[Optional[Path], typer.Option(help="A study folder of this sweep: its "
                                                  "answer is scored beside them.")] = None,
) -> None:
    """AIConfigurator's picks for a sweep's question, scored like dynamo-bench's own."""
    from dynamo_bench import api
    from dynamo_bench.tune.peer import markdown

    for t, c in api.compare_with_aiconfigurator(sweep_path, tier, study).items():
        console.print(f"[bold]{t}[/bold]")
        console.print(markdown(c), markup=False, highlight=False)


def _print_peers(record) -> None:  # type: ignore[no-untyped-def]
    from dynamo_bench.tune.peer import EVALUATORS, stored

    for tier in record.meta.get("peer", {}):
        c = stored(record.meta, tier)
        assert c is not None
        if c.skipped:
            console.print(f"{tier}: not compared with AIConfigurator ({c.skipped})")
            continue
        theirs = ", ".join(f"{p.label} {p.scores['study'].tok_s_per_gpu or 0:,.1f}"
                           for p in c.picks if p.source == "aiconfigurator"
                           and "study" in p.scores)
        ratios = ", ".join(f"{e} {c.ratio(e):.2f}x" for e in EVALUATORS
                           if c.ratio(e) is not None)
        console.print(f"{tier}: AIConfigurator's picks scored here: {theirs} tok/s/GPU; "
                      f"ours / theirs: {ratios or '-'}")


class _TuneProgress:
    """Tuning progress: on a terminal one rich bar per tier and stage (done/total, the best
    feasible value with the configuration that set it, what runs now, why a stage stopped);
    elsewhere (CI, a log file, nohup) one plain line per finished trial and stage."""

    def __init__(self) -> None:
        self.live = err_console.is_terminal

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description:<24}"), BarColumn(bar_width=24),
                                MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                                TextColumn("[dim]{task.fields[now]}"), console=err_console)
            self.bar.__enter__()
        self.tasks: dict[tuple[str, str], int] = {}
        self.start = time.monotonic()
        return self

    def __call__(self, e) -> None:  # type: ignore[no-untyped-def]
        best = "" if e.best is None else f"best {e.best:,.1f} tok/s/GPU ({e.best_config})"
        if e.stage == "compare":
            best = "AIConfigurator's picks, scored here"
        if not self.live:
            if e.current and e.stage == "explore":
                return  # one line per finished trial, not per start
            state = f"stopped: {e.finished}" if e.finished else (e.current or "")
            err_console.print(f"[{time.monotonic() - self.start:6.0f} s] {e.tier} {e.stage} "
                              f"{e.done}/{e.total} {best} {state}".rstrip(), markup=False,
                              highlight=False, soft_wrap=True)
            return
        key = (e.tier, e.stage)
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(f"{e.tier} {e.stage}", total=e.total, best="",
                                                now="")
        now = f"stopped: {e.finished}" if e.finished else (f"now: {e.current}" if e.current
                                                             else "")
        self.bar.update(self.tasks[key], completed=e.done, total=e.total, best=best,
                        now=now[:70])

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        if self.live:
            return self.bar.__exit__(*exc)
        return None


@app.command(epilog=_examples('dynamo-bench report results/quickstart --html'))
def report(
    folder: Annotated[Path, typer.Argument(help="Study folder written by `tune`.")],
    storage: Annotated[Optional[str], typer.Option(help="Read this storage instead of the "
                                                   "one the folder names.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Also write report.html (one "
                                       "self-contained page).")] = False,
) -> None:
    """Regenerate every file of a study folder from its storage alone."""
    from dynamo_bench import api

    rep = api.write_report(folder, storage=storage, html=html)
    _print_report(rep)
    if html:
        console.print(f"wrote {folder / 'report.html'}")


def _print_next(rep, record) -> None:  # type: ignore[no-untyped-def]
    """The end of a run: what to be careful about, where the report is, what to run next."""
    from dynamo_bench.report.best import caveats

    for tier, choice in rep.choices.items():
        for note in caveats(choice, record.sweep.load.limit):
            console.print(f"[yellow]{tier}: {note}[/yellow]")
    html = rep.folder / "report.html"
    if html.exists():
        console.print(f"report: {html}")
    served = [t for t, c in rep.choices.items() if c.best is not None]
    if served:
        console.print(f"next: dynamo-bench serve {rep.folder / 'best' / served[0]}"
                      "/deployment.yaml --check   (or launch.sh / k8s.yaml beside it)")


def _print_report(rep) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"{rep.folder}", box=None)
    for c in ("tier", "answer", "GPUs", "load", "predicted tok/s/GPU", "verified tok/s/GPU",
              "verdict"):
        table.add_column(c, justify="left" if c in ("tier", "answer", "verdict") else "right")
    for tier, c in rep.choices.items():
        a = rep.answers[tier]
        if a["trial"] is None:
            table.add_row(tier, "[red]no configuration meets the SLA[/red]", "-", "-", "-", "-",
                          (c.closest.reason if c.closest is not None else "") or "")
            continue
        verdict = a["verdict"] if a["verified_ok"] else f"[red]{a['verdict']}[/red]"
        table.add_row(tier, str(a["config"]), str(a["gpus"]), _fmt(a["concurrency"], 0),
                      _fmt(a["predicted_tok_s_per_gpu"]), _fmt(a["verified_tok_s_per_gpu"]),
                      verdict)
    console.print(table)
    console.print(f"deployable files in {rep.folder / 'best'}/<tier>/; plots and tables in "
                  f"{rep.folder}")


def _ints(text: str, field: str) -> list[int]:
    return [int(x) for x in _numbers(text, field, integer=True)]


@app.command(epilog=_examples('dynamo-bench profile serving/agg.yaml --out results/profile-agg --isl 256,1024'))
def profile(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Deployment to profile.")],
    out: Annotated[Path, typer.Option(help="Output folder (tables.npz, points.csv, runs/).")],
    isl: Annotated[str, typer.Option(help="Prefill input lengths.")] = "256,1024,4096",
    batches: Annotated[str, typer.Option(help="Decode batch sizes (concurrencies).")] = "1,8,24",
    contexts: Annotated[str, typer.Option(help="Decode context lengths.")] = "512,2048",
) -> None:
    """Measure a live deployment (TTFT by input length, ITL by batch and context) and fit
    timing tables from it; use them with `timing: OUT/tables.npz` in a spec."""
    from dynamo_bench import api

    _folder_path(out, "--out")
    spec = api.load_deployment(spec_path)
    plan = api.ProfilePlan(isl=_ints(isl, "--isl"), batches=_ints(batches, "--batches"),
                           contexts=_ints(contexts, "--contexts"))
    with _progress() as progress:
        outcome = api.profile(spec, out, plan, progress=progress)
    table = Table("kind", "where", "measured ms", box=None, title="profile")
    for p in outcome.result.prefill:
        table.add_row("prefill", f"isl {p.isl:.0f}", f"{p.ttft_ms:.1f}")
    for d in outcome.result.decode:
        table.add_row("decode", f"batch {d.batch:.0f}, context {d.context:.0f}",
                      f"{d.itl_ms:.2f}")
    console.print(table)
    console.print(f"wrote {outcome.tables_path}")


@app.command(epilog=_examples('dynamo-bench perf --model Llama-3.1-70B --gpu h100_sxm --tp 4'))
def perf(
    model: Annotated[str, typer.Option(help="Catalogue model or model directory.")],
    gpu: Annotated[str, typer.Option(help="GPU type (h100_sxm, h200_sxm, b200, ...).")],
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallel size.")] = 1,
    pp: Annotated[int, typer.Option(min=1, help="Pipeline parallel size.")] = 1,
    backend: Annotated[str, typer.Option(help="vllm, sglang, trtllm (mocker = vllm).")] = "vllm",
    precision: Annotated[str, typer.Option(help="bf16 or fp8.")] = "bf16",
    block_size: Annotated[int, typer.Option(min=1, help="KV block size.")] = 64,
    timing: Annotated[str, typer.Option(help=(
        "auto (measured > AIConfigurator > roofline), roofline, aiconfigurator, or an NPZ."))
    ] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Write the timing tables (NPZ).")] = None,
) -> None:
    """Performance-model verdict for one worker: memory fit, KV capacity, predicted TTFT/ITL."""
    from dynamo_bench import api

    if out is not None:
        _file_path(out, "--out")
    report = api.predict(model, gpu, tp=tp, pp=pp, backend=backend, precision=precision,
                         block_size=block_size, timing=timing)
    console.print(report.fit.reason)
    if not report.fit.fits or report.tables is None:
        raise typer.Exit(1)
    prov = report.tables.provenance
    skipped = [f"{c['provider']} ({c['skipped']})" for c in prov.get("chain", [])
               if "skipped" in c]
    console.print(f"timing: {prov['provider']}" + (f"; skipped {'; '.join(skipped)}"
                                                   if skipped else ""))
    table = Table("input tokens", "TTFT ms", box=None, title="prefill (one request)")
    for n, ms in report.ttft_ms.items():
        table.add_row(str(n), f"{ms:.1f}")
    console.print(table)
    table = Table("batch", *[f"ctx {c}" for c in report.contexts], box=None,
                  title="decode ITL ms (batch x context)")
    for b, row in report.itl_ms.items():
        table.add_row(str(b), *[f"{v:.2f}" if v is not None else "-" for v in row])
    console.print(table)
    if out is not None:
        path = api.write_tables(report, out)
        console.print(f"wrote {path} (+ {path.with_suffix('.json').name})")


@model_app.command("make", epilog=_examples('dynamo-bench model make Qwen3-8B models/qwen3-8b', 'dynamo-bench model make Llama-3.1-8B models/tiny-llama --tiny'))
def model_make(
    name: Annotated[str, typer.Argument(help="Catalogue model (see `dynamo-bench model list`).")],
    dest: Annotated[Path, typer.Argument(help="Directory to write.")],
    tiny: Annotated[bool, typer.Option("--tiny", help=(
        "A servable checkpoint: the architecture shrunk to 2 layers, hidden 256, random bf16 "
        "weights (about 11 MB), for a real engine on a CPU."))] = False,
) -> None:
    """Write a model directory: real config.json, a locally trained tokenizer, a chat template."""
    from dynamo_bench import api

    path = api.make_model_dir(name, dest, tiny=tiny)
    console.print(f"wrote {path}")


@model_app.command("lora", epilog=_examples('dynamo-bench model lora models/tiny-llama models/tiny-llama-lora'))
def model_lora(
    model_dir: Annotated[Path, typer.Argument(help="A tiny model (`model make ... --tiny`).")],
    dest: Annotated[Path, typer.Argument(help="Directory to write.")],
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 8,
) -> None:
    """Write a random LoRA adapter (PEFT format, q/k/v/o projections) for a tiny model."""
    from dynamo_bench import api

    path = api.make_lora(model_dir, dest, rank=rank)
    console.print(f"wrote {path}")


@engine_app.command("install", epilog=_examples('dynamo-bench engine install vllm --cpu', 'dynamo-bench engine install sglang'))
def engine_install(
    engine: Annotated[str, typer.Argument(help="vllm, sglang or trtllm.")],
    cpu: Annotated[bool, typer.Option("--cpu", help="vLLM's CPU build (no GPU needed).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No installer output.")] = False,
) -> None:
    """Build the engine's private environment (Dynamo's worker + the engine + NIXL, at the
    versions the installed Dynamo release pins). Idempotent; a stopped install resumes."""
    from dynamo_bench.serving import engines

    p = engines.plan(engine, "cpu" if cpu else "cuda")  # type: ignore[arg-type]
    done = {e.name for e in engines.installed()}
    if p.name in done:
        console.print(f"{p.name} is already installed ({engines.engines_root() / p.name})")
        return
    err_console.print(f"installing {p.name}: {' '.join(p.requirements)}", markup=False)
    t0 = time.monotonic()
    env = engines.install(p.engine, p.flavour,
                          log=None if quiet else lambda line: err_console.print(line, markup=False,
                                                                               highlight=False))
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    console.print(f"installed {env.name} in {time.monotonic() - t0:.0f} s ({versions}): {env.path}")


@engine_app.command("list", epilog=_examples('dynamo-bench engine list'))
def engine_list() -> None:
    """The installed engine environments, with versions and sizes."""
    from dynamo_bench.serving import engines

    found = engines.installed()
    if not found:
        console.print("no engine installed (dynamo-bench engine install vllm --cpu)")
        return
    table = Table("name", "engine", "flavour", "versions", "size", box=None)
    for e in found:
        table.add_row(e.name, e.engine, e.flavour,
                      ", ".join(f"{k} {v}" for k, v in e.versions.items()),
                      f"{e.size_bytes() / 2**30:.1f} GiB")
    console.print(table)


@engine_app.command("remove", epilog=_examples('dynamo-bench engine remove vllm-cpu-dynamo1.6.1'))
def engine_remove(
    name: Annotated[str, typer.Argument(help="An environment as `engine list` names it.")],
) -> None:
    """Delete an engine environment."""
    from dynamo_bench.serving import engines

    console.print(f"removed {engines.remove(name)}")


@model_app.command("list", epilog=_examples('dynamo-bench model list'))
def model_list() -> None:
    """List the catalogue's model architectures."""
    from dynamo_bench.perf.models import CATALOGUE

    table = Table("name", "hf id", "layers", "hidden", "heads/kv", "experts", box=None)
    for m in CATALOGUE.values():
        c = m.config
        experts = c.get("num_experts") or c.get("num_local_experts")
        active = c.get("num_experts_per_tok")
        table.add_row(m.name, m.hf_id, str(c["num_hidden_layers"]), str(c["hidden_size"]),
                      f"{c['num_attention_heads']}/{c['num_key_value_heads']}",
                      f"{experts} (top {active})" if experts else "-")
    console.print(table)


@notebook_app.command("run", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True},
                      epilog=_examples("dynamo-bench notebook run quickstart -p trials 8"))
def notebook_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Notebook name (see `dynamo-bench notebook "
                                        "list`).")],
    output: Annotated[Optional[Path], typer.Option(help="Where to save the executed copy "
                                                   "(default: next to the study).")] = None,
) -> None:
    """Execute a notebook top to bottom with papermill and save the executed copy.

    Parameters as in papermill: -p KEY VALUE (repeatable; VALUE is YAML: 8, [1, 2],
    '{chat: "ttft_ms.p90<=300"}').
    """
    from dynamo_bench.notebooks import run_notebook

    params = _notebook_params(list(ctx.args))
    try:
        path = run_notebook(name, params, output=output)
    except DynamoBenchError as e:
        executed = getattr(e, "executed", None)
        if executed is not None:
            console.print(f"executed copy (with the traceback): {executed}")
        raise
    console.print(f"wrote {path}")


def _notebook_params(args: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    while args:
        flag = args.pop(0)
        if flag not in ("-p", "--parameters") or len(args) < 2:
            raise SpecError("-p", f"expected -p KEY VALUE, got {' '.join([flag, *args[:2]])!r}")
        key, value = args.pop(0), args.pop(0)
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise SpecError(f"-p {key}", f"{value!r} is not a YAML value") from None
    return params


@notebook_app.command("list", epilog=_examples('dynamo-bench notebook list'))
def notebook_list() -> None:
    """The notebooks and their parameters."""
    from dynamo_bench.notebooks import list_notebooks, notebook_parameters

    table = Table("notebook", "parameters (defaults)", box=None)
    for name in list_notebooks():
        params = notebook_parameters(name)
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in params.items()))
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit statuses.

    0 success (and help); 2 a mistake in the input, one line naming it and the fix; 1 a
    failure at run time; 130 interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        # without standalone mode click returns the code of a `typer.Exit` instead of exiting
        code = app(args=args, standalone_mode=False, prog_name="dynamo-bench")
    except _click_errors.NoArgsIsHelpError:  # typer has printed the help already
        sys.exit(0)
    except _click_errors.UsageError as e:
        command = e.ctx.command_path if e.ctx is not None else "dynamo-bench"
        _fail(f"{_one_line(e.format_message())} (see '{command} --help')", 2)
    except _click_errors.ClickException as e:
        _fail(_one_line(e.format_message()), 2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except UserError as e:
        if debug:
            raise
        _fail(str(e), 2)
    except (LaunchError, DynamoBenchError) as e:
        if debug:
            raise
        print(f"dynamo-bench: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # a bug: one line, the traceback on request
        if debug:
            raise
        _fail(f"internal error {type(e).__name__}: {_one_line(str(e))} (rerun with --debug "
              "for the traceback and report it)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _fail(message: str, status: int) -> None:
    print(f"dynamo-bench: error: {_one_line(message)}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
