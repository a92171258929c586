"""The `dynamo-bench` command. Thin: every command is a call into the library.

Errors a user can fix print one line and exit 2; run-time failures (a stack that will not start,
a worker that dies) exit 1 with the log tail; `--debug` shows tracebacks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
import yaml
from rich.console import Console
from rich.table import Table

from dynamo_bench.errors import DynamoBenchError, LaunchError, SpecError, UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmark and tune NVIDIA Dynamo deployments.")
model_app = typer.Typer(no_args_is_help=True, help="Local model directories.")
app.add_typer(model_app, name="model")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Benchmark and tune NVIDIA Dynamo deployments."""


@app.command()
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
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Start-up deadline, seconds.")] = None,
) -> None:
    """Run a deployment in the foreground (Ctrl-C stops it), check it, or write its manifest."""
    from dynamo_bench import api

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


@model_app.command("make")
def model_make(
    name: Annotated[str, typer.Argument(help="Catalogue model (see `dynamo-bench model list`).")],
    dest: Annotated[Path, typer.Argument(help="Directory to write.")],
) -> None:
    """Write a model directory: real config.json, a locally trained tokenizer, a chat template."""
    from dynamo_bench import api

    path = api.make_model_dir(name, dest)
    console.print(f"wrote {path}")


@model_app.command("list")
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit statuses."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False, prog_name="dynamo-bench")
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except UserError as e:
        if debug:
            raise
        print(f"dynamo-bench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (LaunchError, DynamoBenchError) as e:
        if debug:
            raise
        print(f"dynamo-bench: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
