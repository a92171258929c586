"""How fast the command line answers: `--help`, a command's help and a usage error.

Each command is run as a fresh process (the console script in this environment), 7 times; the
median wall time is printed. Goal: under 1 s each (the package imports its API lazily).

    .venv/bin/python tests/benchmarks/bench_cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).with_name("dynamo-bench"))
CASES = {
    "--help": ["--help"],
    "tune --help": ["tune", "--help"],
    "bench -h": ["bench", "-h"],
    "--version": ["--version"],
    "unknown command": ["servee"],
    "unknown flag": ["serve", "x.yaml", "--foo"],
    "bad number": ["tune", "x.yaml", "--trials", "0"],
}
REPEATS = 7


def main() -> None:
    print(f"{'command':<18} {'median s':>9} {'max s':>7}  exit")
    worst = 0.0
    for label, args in CASES.items():
        times, code = [], None
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            proc = subprocess.run([CLI, *args], capture_output=True)
            times.append(time.perf_counter() - t0)
            code = proc.returncode
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{label:<18} {med:9.2f} {max(times):7.2f}  {code}")
    print(f"slowest median {worst:.2f} s: goal < 1 s {'met' if worst < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
