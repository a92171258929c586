"""Debian packages the test set-up installs when they are missing (root only)."""

from __future__ import annotations

import os
import subprocess


def apt_install(package: str, timeout: float = 1200) -> None:
    """`apt-get install` one package non-interactively; a clear error when not root."""
    if os.geteuid() != 0:
        raise RuntimeError(f"{package} is missing; install Debian's `{package}` package "
                           f"(apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                   check=True, env=env, timeout=timeout, stdout=subprocess.DEVNULL)
