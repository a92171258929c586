"""The public Python API. The CLI and the notebooks call these and nothing else.

    import dynamo_bench as db
    spec = db.load_deployment("serving/agg_kv.yaml")
    with db.serve(spec) as stack:
        print(stack.url, stack.ready_s)
        print(db.check_stack(stack))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_bench.errors import DynamoBenchError, SpecError
from dynamo_bench.perf.models import CATALOGUE, catalogue_model
from dynamo_bench.serving.k8s import dgd_manifest
from dynamo_bench.serving.model_dir import write_model_dir
from dynamo_bench.serving.stack import Stack
from dynamo_bench.specs import DeploymentSpec
from dynamo_bench.specs import load_deployment as _load_deployment


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


def make_model_dir(name: str, dest: str | Path) -> Path:
    """Write a catalogue model's directory (config.json, trained tokenizer, chat template)."""
    entry = catalogue_model(name)
    if entry is None:
        raise SpecError("NAME", f"{name!r} is not in the catalogue "
                        f"(choose from: {', '.join(CATALOGUE)})")
    return write_model_dir(entry, Path(dest))
