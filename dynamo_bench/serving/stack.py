"""A running Dynamo stack: frontend + workers as real processes, ready-checked, always torn down.

    with Stack(spec) as stack:          # returns once every worker is registered and
        print(stack.url, stack.ready_s)  # one real chat completion succeeded
        stack.ensure_alive()             # raises WorkerDiedError if any process has exited
    # here every process of the stack is gone, whether the block ended normally, raised, or
    # was interrupted by Ctrl-C / SIGTERM

Each stack gets free ports, its own discovery directory (`DYN_FILE_KV`) and its own HOME, so two
stacks on one machine never see each other, and binds loopback unless the spec says otherwise.
Dynamo's event plane binds its direct-mode ZMQ publishers on 0.0.0.0 whatever DYN_EVENT_PLANE_HOST
says, so each stack also runs a small XSUB/XPUB broker on 127.0.0.1 and puts every process in
broker mode (`DYN_ZMQ_BROKER_URL`). Once ready, the listening sockets of every process of the
stack are checked: any not on loopback is logged as one warning and kept in `stack.exposed`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import httpx
import psutil

from dynamo_bench.cache import cache_root
from dynamo_bench.errors import DynamoBenchError, LaunchError
from dynamo_bench.serving.commands import (
    LOOPBACK_ENV,
    WorkerCommand,
    frontend_argv,
    local_kv_events_endpoint,
    localize_kv_events,
    worker_commands,
    zmq_broker_argv,
)
from dynamo_bench.perf.timing import tables_for
from dynamo_bench.serving.engines import engine_python
from dynamo_bench.serving.gpus import assign_gpus, check_simulated_workers, gpu_inventory
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.serving.ports import LOW_PORT_RANGE, free_ports
from dynamo_bench.serving.process import ManagedProcess, ProcessSpec, stop_all
from dynamo_bench.specs.deployment import DeploymentSpec


class WorkerDiedError(DynamoBenchError):
    """A process of a running stack has exited. `exits` maps process name -> exit status."""

    def __init__(self, exits: dict[str, int], tails: dict[str, str]) -> None:
        self.exits = exits
        self.tails = tails
        names = ", ".join(f"{n} (exit {c})" for n, c in exits.items())
        super().__init__(f"stack process died: {names}")


@dataclass(frozen=True)
class ProcessInfo:
    """A process of the stack as the caller sees it."""

    name: str
    role: str
    pid: int
    pgid: int
    log_path: Path
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket of a process of the stack (`pid` may be a child of `name`)."""

    name: str
    pid: int
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.ip.split("%", 1)[0])
        except ValueError:
            return self.ip == "localhost"
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        return (mapped or ip).is_loopback

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.name} (pid {self.pid}) on {host}:{self.port}"


def listeners(procs: dict[str, int]) -> list[Listener]:
    """Every listening TCP socket of the given processes (name -> pid) and of their children."""
    out: list[Listener] = []
    for name, pid in procs.items():
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            try:
                # net_connections is psutil >= 6; connections before
                conns = getattr(proc, "net_connections", proc.connections)(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            out += [Listener(name, proc.pid, c.laddr.ip, c.laddr.port) for c in conns
                    if c.status == psutil.CONN_LISTEN]
    return out


_log = logging.getLogger(__name__)
BROKER = "event-broker"


class _Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an exception so that `with` blocks unwind and tear down."""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(f"received {signal.Signals(signum).name}")


class Stack:
    """One deployment launched on this machine. Use as a context manager, or `start()`/`stop()`.

    Args:
        spec: what to launch.
        run_dir: where logs, the discovery store and HOME go. Kept after stop if given; if None a
            temporary directory is used and removed at stop (start-up errors carry the log tail).
        ready_timeout_s: start-up deadline (default: the spec's `startup_deadline_s`).
        grace_s: how long a graceful stop may take before the process groups are killed.
        inventory: GPU ids to assign from (default: `gpu_inventory()`); ignored by the mocker.
        python: the workers' interpreter (default: this one for the mocker, the engine's own
            environment for a real engine, serving/engines.py); the frontend runs in this one.
    """

    def __init__(self, spec: DeploymentSpec, run_dir: str | Path | None = None, *,
                 ready_timeout_s: float | None = None, grace_s: float = 3.0,
                 inventory: list[str] | None = None, python: str | None = None) -> None:
        self.spec = spec
        self._keep_dir = run_dir is not None
        # absolute: with a relative run dir the workers register but the frontend never finds
        # the model (404 on every request); where Dynamo resolves the path was not pinned down
        self._run_dir_arg = Path(run_dir).resolve() if run_dir is not None else None
        self.run_dir: Path | None = None
        self.ready_timeout_s = ready_timeout_s or spec.startup_deadline_s
        self.grace_s = grace_s
        self._inventory = inventory
        self._python = python
        self._procs: list[ManagedProcess] = []
        self._broker: ManagedProcess | None = None
        self._roles: dict[str, str] = {}
        self._gpus: dict[str, list[str]] = {}
        self._old_handlers: dict[int, object] = {}
        self.port: int | None = None
        self.model_path: str | None = None
        self.tables: dict = {}
        self.ready_s: float | None = None
        self.teardown_s: float | None = None
        #: listening sockets of the stack not bound to loopback, found once it was ready
        self.exposed: list[Listener] = []
        self.started = False

    # -- public surface ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the frontend, e.g. http://127.0.0.1:40123 (the OpenAI API is under /v1)."""
        host = self.spec.frontend.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}"

    @property
    def model_name(self) -> str:
        return self.spec.model_name

    @property
    def expected_workers(self) -> int:
        return sum(g.replicas for g in self.spec.workers.values())

    def processes(self) -> list[ProcessInfo]:
        """Every process of the stack (frontend first), with PIDs and log paths."""
        return [ProcessInfo(p.name, self._roles[p.name], p.pid, p.pgid,
                            p.spec.log_path or Path(), tuple(self._gpus.get(p.name, ())))
                for p in self._procs]

    def poll(self) -> dict[str, int | None]:
        """Exit status per process name (None: still running), the event broker included."""
        return {p.name: p.poll() for p in self._all()}

    @property
    def broker_pid(self) -> int | None:
        """PID of the stack's loopback event-plane broker (not listed by `processes()`)."""
        return self._broker.pid if self._broker else None

    def listeners(self) -> list[Listener]:
        """Every listening TCP socket of the stack's processes and their children, right now."""
        return listeners({p.name: p.pid for p in self._all()})

    def dead(self) -> dict[str, int]:
        """The processes that have exited, with their exit status."""
        return {n: c for n, c in self.poll().items() if c is not None}

    def ensure_alive(self) -> None:
        """Raise `WorkerDiedError` if any process of the stack has exited."""
        dead = self.dead()
        if dead:
            tails = {p.name: p.log_tail(15) for p in self._all() if p.name in dead}
            raise WorkerDiedError(dead, tails)

    def log_path(self, name: str) -> Path:
        for p in self._procs:
            if p.name == name and p.spec.log_path:
                return p.spec.log_path
        raise KeyError(name)

    def start(self) -> Stack:
        """Launch every process and wait until the stack serves. On any failure, tear down first.

        Raises:
            SpecError / ResourceError: bad model directory, too many GPUs (nothing was started).
            LaunchError: a process exited, or the deadline passed, during start-up.
        """
        if self.started:
            raise RuntimeError("stack already started")
        if self.spec.backend == "mocker":
            check_simulated_workers({r: g.replicas for r, g in self.spec.workers.items()})
        model = resolve_model(self.spec.model, simulated=self.spec.backend == "mocker",
                              precision=self.spec.precision, backend=self.spec.backend)
        self.model_path = model
        self.tables = tables_for(self.spec, model) if self.spec.backend == "mocker" else {}
        workers = worker_commands(self.spec, model, python=sys.executable, tables=self.tables)
        if self.spec.backend != "mocker" and self.spec.device == "gpu":
            inventory = gpu_inventory() if self._inventory is None else self._inventory
            self._gpus = assign_gpus([(w.name, w.gpus) for w in workers], inventory)
        # the interpreter after the GPUs (their names and counts do not depend on it): a
        # machine without enough GPUs says so before it says an engine is missing
        python = self._worker_python()
        if python != sys.executable:
            workers = worker_commands(self.spec, model, python=python, tables=self.tables)
        self._install_signal_handlers()
        self.started = True
        t0 = time.monotonic()
        try:
            self._launch(workers)
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0
        try:
            self.exposed = [s for s in self.listeners() if not s.loopback]
        except BaseException:
            self.stop()
            raise
        if self.exposed:
            _log.warning("stack %s listens beyond loopback: %s", self.spec.name,
                         ", ".join(str(s) for s in self.exposed))
        return self

    def stop(self) -> float:
        """Stop every process group (graceful, then SIGKILL after `grace_s`); idempotent.

        Returns the teardown time in seconds.
        """
        t0 = time.monotonic()
        # a second Ctrl-C or SIGTERM must not cut the teardown short before SIGKILL
        quiet = {}
        if threading.current_thread() is threading.main_thread():
            quiet = {s: signal.signal(s, signal.SIG_IGN)
                     for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if self._procs or self._broker:
                stop_all(self._all(), self.grace_s)
        finally:
            for s, handler in quiet.items():
                signal.signal(s, handler)
            self._restore_signal_handlers()
        self.teardown_s = time.monotonic() - t0
        if self.run_dir is not None and not self._keep_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.teardown_s

    def __enter__(self) -> Stack:
        return self if self.started else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _all(self) -> list[ManagedProcess]:
        return [*self._procs, *([self._broker] if self._broker else [])]

    def _start_broker(self, run: Path) -> str:
        """Start the loopback event-plane broker; its `DYN_ZMQ_BROKER_URL` value."""
        url_file = run / "tmp" / "zmq-broker-url"
        url_file.unlink(missing_ok=True)
        self._broker = ManagedProcess(ProcessSpec(
            BROKER, zmq_broker_argv(str(url_file)), {"PYTHONUNBUFFERED": "1"},
            run / f"{BROKER}.log"))
        deadline = time.monotonic() + 30.0  # its own: a few hundred ms, more on a busy CPU
        while not url_file.exists():
            code = self._broker.poll()
            if code is not None or time.monotonic() > deadline:
                what = "did not start" if code is None else f"exited with status {code}"
                raise LaunchError(f"{BROKER} {what}" + self._where(self._broker.spec.log_path),
                                  BROKER, code, self._broker.log_tail(20))
            time.sleep(0.02)
        return url_file.read_text().strip()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_interrupt)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()

    def _worker_python(self) -> str:
        """The interpreter the caller named; else this one for the mocker and the engine's own
        environment for a real engine (serving/engines.py)."""
        if self._python is not None:
            return self._python
        if self.spec.backend == "mocker":
            return sys.executable
        flavour = "cpu" if self.spec.device == "cpu" else "cuda"
        return str(engine_python(self.spec.backend, flavour))

    def _launch(self, workers: list[WorkerCommand]) -> None:
        if self._run_dir_arg is not None:
            self._run_dir_arg.mkdir(parents=True, exist_ok=True)
            self.run_dir = self._run_dir_arg
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"dynamo-bench-{self.spec.name}-"))
        run = self.run_dir
        for sub in ("discovery", "home", "logs", "tmp"):
            (run / sub).mkdir(exist_ok=True)
        ports = free_ports(1 + len(workers))
        system_ports = free_ports(len(workers), port_range=LOW_PORT_RANGE)
        self.port = self.spec.frontend.port or ports[0]
        common = {**LOOPBACK_ENV, "DYN_FILE_KV": str(run / "discovery"),
                  "HOME": str(run / "home"), "TMPDIR": str(run / "tmp"),
                  # HOME moves into the run; the user's Hugging Face cache and token do not
                  "HF_HOME": os.environ.get("HF_HOME")
                  or str(Path.home() / ".cache" / "huggingface"),
                  "DYN_NAMESPACE": "dynamo", "PYTHONUNBUFFERED": "1",
                  "DYN_ZMQ_BROKER_URL": self._start_broker(run)}
        specs: list[tuple[str, ProcessSpec]] = []
        for i, w in enumerate(workers):
            sys_port, kv_port = system_ports[i], ports[1 + i]
            env = {**common, "DYN_SYSTEM_PORT": str(sys_port), **w.env}
            if self.spec.backend != "mocker":
                env["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpus.get(w.name, []))
                if self.spec.device == "cpu":  # the engine's compile cache outlives the run
                    env["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "torchinductor")
            argv = localize_kv_events(w.argv, local_kv_events_endpoint(
                self.spec.backend, kv_port, str(run / "tmp" / f"kv-events-{w.name}")))
            specs.append((w.role, ProcessSpec(w.name, argv, env, run / "logs" / f"{w.name}.log")))
        fe = ProcessSpec("frontend", frontend_argv(self.spec, self.port), common,
                         run / "logs" / "frontend.log")
        # Workers first: they register while the frontend starts, which shortens start-up.
        for role, spec in [*specs, ("frontend", fe)]:
            self._roles[spec.name] = role
            self._procs.append(ManagedProcess(spec))

    def _registered_workers(self, client: httpx.Client) -> int | None:
        try:
            r = client.get(f"{self.url}/health", timeout=1.0)
            body = r.json()
        except (httpx.HTTPError, ValueError):
            return None
        instances = body.get("instances") or []
        return len({i.get("instance_id") for i in instances if i.get("endpoint") == "generate"})

    def _chat_ok(self, client: httpx.Client) -> bool:
        try:
            r = client.post(f"{self.url}/v1/chat/completions", timeout=10.0, json={
                "model": self.model_name, "max_tokens": 2, "stream": False,
                "messages": [{"role": "user", "content": "ready?"}]})
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def _where(self, path: Path | None) -> str:
        """' (logs: PATH)' when the logs outlive the stack, else nothing."""
        return f" (logs: {path})" if self._keep_dir and path else ""

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.ready_timeout_s
        registered: int | None = None
        with httpx.Client() as client:
            while True:
                for p in self._procs:
                    code = p.poll()
                    if code is not None:
                        raise LaunchError(
                            f"{p.name} exited with status {code} during start-up"
                            + self._where(p.spec.log_path), p.name, code, p.log_tail(20))
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"stack not ready after {self.ready_timeout_s:.0f} s: "
                        f"{registered or 0} of {self.expected_workers} workers registered"
                        + self._where(self.run_dir / "logs" if self.run_dir else None),
                        "frontend", None,
                        self._procs[-1].log_tail(20))
                registered = self._registered_workers(client)
                if registered is not None and registered >= self.expected_workers:
                    if self._chat_ok(client):
                        return
                time.sleep(0.05)
