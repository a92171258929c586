"""Private virtual environments holding vLLM's and SGLang's real argument parsers.

The engines cannot run on a CPU machine, but their command-line parsers can be imported. Each
venv is built once (about a minute and 2 GB each) under `$DYNAMO_BENCH_CACHE/engine-parsers/`
with plain pip: torch's CPU build, the few packages the parsers import, and the engine itself
without its GPU dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from dynamo_bench.cache import cache_root

# What the parsers import, pinned to the versions they were checked with.
_COMMON = ["numpy==2.4.6", "packaging==26.3", "psutil==7.2.2", "pydantic==2.14.3",
           "pyzmq==27.3.0", "msgspec==0.22.0", "aiohttp==3.14.5", "requests==2.34.2",
           "pillow==13.0.0", "pybase64==1.5.1"]
ENGINES: dict[str, dict[str, list[str]]] = {
    "vllm": {
        "deps": _COMMON + ["regex==2026.11.15", "pyyaml==6.0.3", "huggingface_hub==1.33.0",
                           "cbor2==6.2.1", "urllib3==2.8.0", "transformers==5.17.0",
                           "openai-harmony==0.0.8", "openai==3.54.0", "cloudpickle==3.1.2",
                           "cachetools==8.0.1", "uvloop==0.23.0", "py-cpuinfo==9.0.0",
                           "prometheus_client==0.26.0", "fastapi==0.136.3",
                           "partial-json-parser==0.2.1.1.post7", "llguidance==1.7.6",
                           "apache-tvm-ffi==0.1.11"],
        # the vLLM release ai-dynamo 1.6.1 pins (ai-dynamo[vllm])
        "engine": ["vllm==0.31.0", "xgrammar==0.2.7"],
    },
    "sglang": {
        "deps": _COMMON + ["orjson==3.13.0", "starlette==1.10.0", "tqdm==4.70.1",
                           "ipython==9.18.1", "triton==3.9.0"],
        "engine": ["sglang==0.5.21"],
    },
}

_PARSE = {
    "vllm": """
import json, os, sys
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import vllm.platforms
from vllm.platforms.cpu import CpuPlatform
vllm.platforms.current_platform = CpuPlatform()
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.engine.arg_utils import AsyncEngineArgs
p = FlexibleArgumentParser(); AsyncEngineArgs.add_cli_args(p)
ns = p.parse_args(json.loads(sys.stdin.read()))
print(json.dumps(vars(ns), default=lambda o: o.__dict__ if hasattr(o, "__dict__") else str(o)))
""",
    "sglang": """
import argparse, json, sys
from sglang.srt.server_args import ServerArgs
p = argparse.ArgumentParser(); ServerArgs.add_cli_args(p)
ns = p.parse_args(json.loads(sys.stdin.read()))
print(json.dumps(vars(ns), default=str))
""",
}


def engine_python(engine: str) -> Path:
    """The interpreter of the engine's parser venv, built on first use."""
    root = cache_root() / "engine-parsers" / engine
    python = root / "bin" / "python"
    marker = root / ".complete"
    spec = ENGINES[engine]
    wanted = json.dumps(spec, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return python
    venv.create(root, with_pip=True, clear=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *spec["deps"]], check=True)
    subprocess.run([*pip, "--no-deps", *spec["engine"]], check=True)
    marker.write_text(wanted)
    return python


def parse(engine: str, argv: list[str]) -> dict:
    """Parse `argv` with the engine's own parser; raises CalledProcessError if it rejects it."""
    out = subprocess.run([str(engine_python(engine)), "-c", _PARSE[engine]],
                         input=json.dumps(argv), capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    for name in sys.argv[1:] or list(ENGINES):
        print(name, engine_python(name))
