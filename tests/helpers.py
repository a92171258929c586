"""Helpers for tests: process checks by PID."""

from __future__ import annotations

import time

import psutil


def alive(pids: list[int]) -> list[int]:
    """The PIDs that still exist as non-zombie processes."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """Wait until none of `pids` exists; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = alive(pids)
        if not left:
            return []
        time.sleep(0.05)
    return alive(pids)


def sigint_default() -> None:
    """`preexec_fn` for a child the test will send SIGINT: a background job of a shell without
    job control starts with SIGINT ignored, and a child would inherit that (Python and bash
    then keep ignoring it, as they should for a user's `cmd &`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
