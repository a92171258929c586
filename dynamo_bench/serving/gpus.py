"""What the machine can hold: its GPU inventory, the assignment of GPUs to workers
(CUDA_VISIBLE_DEVICES), and how many simulated workers fit in its memory."""

from __future__ import annotations

import os
import shutil
import subprocess

from dynamo_bench.errors import ResourceError

INVENTORY_ENV = "DYNAMO_BENCH_GPUS"
#: Resident memory of one mocker worker process (measured: 150-200 MiB), with headroom.
MOCKER_WORKER_MIB = 256


def check_simulated_workers(groups: dict[str, int], available_mib: float | None = None) -> None:
    """Refuse a local stack of mocker workers (role -> replicas) that this machine's memory
    cannot hold, before anything starts.

    Raises:
        ResourceError: naming the largest group, the memory it needs and the most that fit.
    """
    import psutil

    total = sum(groups.values())
    free = psutil.virtual_memory().available / 2**20 if available_mib is None else available_mib
    most = int(free // MOCKER_WORKER_MIB)
    if total <= most:
        return
    role = max(groups, key=lambda r: groups[r])
    raise ResourceError(
        f"workers.{role}.replicas: a local stack of {total} mocker workers needs about "
        f"{total * MOCKER_WORKER_MIB / 1024:,.0f} GiB of memory but {free / 1024:,.1f} GiB is "
        f"available (at most {most} workers fit here); lower replicas, or write the manifest "
        "with `serve --k8s`")


def gpu_inventory() -> list[str]:
    """GPU ids this process may use.

    `$DYNAMO_BENCH_GPUS` wins (a count such as `8`, or ids such as `0,1,4,5`); otherwise the
    GPUs `nvidia-smi` lists, restricted to `$CUDA_VISIBLE_DEVICES` when that is set; otherwise
    none.
    """
    override = os.environ.get(INVENTORY_ENV, "").strip()
    if override:
        if override.isdigit():
            return [str(i) for i in range(int(override))]
        return [x.strip() for x in override.split(",") if x.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    ids = [line.strip() for line in out.splitlines() if line.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        allowed = {v.strip() for v in visible.split(",")}
        ids = [i for i in ids if i in allowed]
    return ids


def assign_gpus(needs: list[tuple[str, int]], inventory: list[str]) -> dict[str, list[str]]:
    """Give each worker (name, GPUs needed) its own consecutive GPUs from `inventory`.

    Raises:
        ResourceError: the workers need more GPUs than the inventory has, before anything starts.
    """
    total = sum(n for _, n in needs)
    if total > len(inventory):
        detail = ", ".join(f"{name}: {n}" for name, n in needs if n)
        raise ResourceError(
            f"gpus: the deployment needs {total} GPUs ({detail}) but this machine has "
            f"{len(inventory)} (reduce replicas/tp/pp, or set {INVENTORY_ENV} if detection is "
            "wrong)")
    out: dict[str, list[str]] = {}
    cursor = 0
    for name, n in needs:
        out[name] = inventory[cursor:cursor + n]
        cursor += n
    return out
