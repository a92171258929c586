"""One child process in its own process group, with its own log file, and a guaranteed stop.

Every process dynamo-bench starts goes through `ManagedProcess`: it runs in a new session (so the
whole group can be signalled, and a terminal's Ctrl-C reaches only us), asks the kernel to kill it
if our thread dies (a backstop for SIGKILL of dynamo-bench itself), and is stopped by process
group, never by name.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: a name unique within its stack, argv, extra environment, and a log file."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    cwd: Path | None = None


class ManagedProcess:
    """A started `ProcessSpec`. Not thread-safe; one owner calls `stop()`."""

    def __init__(self, spec: ProcessSpec, base_env: dict[str, str] | None = None) -> None:
        self.spec = spec
        env = dict(os.environ if base_env is None else base_env)
        env.update(spec.env)
        log = open(spec.log_path, "ab") if spec.log_path else subprocess.DEVNULL  # noqa: SIM115
        # PDEATHSIG fires when the *thread* that forked exits, so only ask for it from the main
        # thread, whose end is the end of the program.
        in_main = threading.current_thread() is threading.main_thread()
        try:
            self.popen = subprocess.Popen(
                spec.argv, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if in_main else None)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.pid = self.popen.pid
        self.pgid = self.pid  # start_new_session: the child leads its own group
        self.started_at = time.monotonic()

    @property
    def name(self) -> str:
        return self.spec.name

    def poll(self) -> int | None:
        """The exit status, or None while running."""
        return self.popen.poll()

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process group (children included); a vanished group is fine."""
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self) -> bool:
        """True while any process of the group exists (the leader may already be gone)."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie leader keeps the group "alive" until reaped.
        self.popen.poll()
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the log, ANSI colours removed."""
        if not self.spec.log_path or not self.spec.log_path.exists():
            return ""
        with open(self.spec.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            tail = deque(f.read().decode("utf-8", "replace").splitlines(), maxlen=lines)
        return "\n".join(_strip_ansi(line) for line in tail)


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def stop_all(procs: list[ManagedProcess], grace_s: float = 3.0) -> dict[str, float]:
    """Stop every process group: SIGTERM all at once, SIGKILL what is left after `grace_s`.

    Returns how long each group took to disappear (seconds). When this returns, no process of
    any group exists (leaders are reaped).
    """
    start = time.monotonic()
    for p in procs:
        if p.group_alive():
            p.signal_group(signal.SIGTERM)
    gone: dict[str, float] = {}
    deadline = start + grace_s
    while True:
        for p in procs:
            if p.name not in gone and not p.group_alive():
                gone[p.name] = time.monotonic() - start
        if len(gone) == len(procs) or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    for p in procs:
        if p.name not in gone:
            p.signal_group(signal.SIGKILL)
    for p in procs:
        if p.name not in gone:
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            while p.group_alive() and time.monotonic() - start < grace_s + 5:
                time.sleep(0.01)
            gone[p.name] = time.monotonic() - start
    return gone
