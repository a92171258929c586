"""A throwaway PostgreSQL server on loopback for tests: Debian's package, a private data dir.

If the server binaries are missing and the tests run as root, Debian's `postgresql` package is
installed first (the test set-up's only system package besides Chromium). The server runs as
the `postgres` user (initdb refuses root), in its own session, and is stopped by process group.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.system import apt_install


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    """The directory of initdb/postgres, installing Debian's package if needed (as root)."""
    bindir = _bindir()
    if bindir is not None:
        return bindir
    apt_install("postgresql")
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but no initdb was found")
    return bindir


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    # setpriv execs in place (no extra parent process), so the PID we keep is the server's
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(database: str = "tune") -> Iterator[str]:
    """Yield a `postgresql://` URL of a fresh database; the server is gone afterwards."""
    bindir = ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="dynamo-bench-pg-"))
    root.chmod(0o755)  # the postgres user must reach its data dir
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    proc = None
    try:
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                                     "-U", "tester", "--no-sync", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)
        port = _free_port()
        log = open(root / "server.log", "w")
        proc = subprocess.Popen(
            _as_postgres([str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                          "-p", str(port), "-k", str(sock), "-F", "-c", "max_connections=50"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"postgresql://tester@127.0.0.1:{port}/postgres"
        _wait_ready(url, proc, root / "server.log")
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        yield f"postgresql://tester@127.0.0.1:{port}/{database}"
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise RuntimeError(f"postgres not ready after {timeout:.0f} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it stops its own workers), SIGKILL if it lingers."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # wait for the rest of the group (background workers) too
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(
                _pgid(p) == pgid for p in psutil.process_iter()):
            time.sleep(0.1)
        break


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except (ProcessLookupError, psutil.Error):
        return None
