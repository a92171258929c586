"""GPU inventory and assignment."""

from __future__ import annotations

import pytest

from dynamo_bench.errors import ResourceError
from dynamo_bench.serving.gpus import assign_gpus, gpu_inventory


def test_inventory_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMO_BENCH_GPUS", "4")
    assert gpu_inventory() == ["0", "1", "2", "3"]
    monkeypatch.setenv("DYNAMO_BENCH_GPUS", "2,3,6")
    assert gpu_inventory() == ["2", "3", "6"]


def test_assignment_is_disjoint_and_consecutive() -> None:
    got = assign_gpus([("prefill-0", 2), ("prefill-1", 2), ("decode-0", 4)],
                      [str(i) for i in range(8)])
    assert got == {"prefill-0": ["0", "1"], "prefill-1": ["2", "3"],
                   "decode-0": ["4", "5", "6", "7"]}


def test_too_many_gpus_is_a_clear_error() -> None:
    with pytest.raises(ResourceError) as info:
        assign_gpus([("agg-0", 4), ("agg-1", 4)], ["0", "1", "2", "3"])
    msg = str(info.value)
    assert msg.startswith("gpus: the deployment needs 8 GPUs")
    assert "this machine has 4" in msg and "\n" not in msg


def test_a_local_mocker_stack_must_fit_in_memory() -> None:
    from dynamo_bench.errors import ResourceError
    from dynamo_bench.serving.gpus import check_simulated_workers

    check_simulated_workers({"prefill": 4, "decode": 4}, available_mib=8 * 1024)
    with pytest.raises(ResourceError, match=r"workers.decode.replicas: a local stack of 1002 "
                       r"mocker workers .* \(at most 32 workers fit"):
        check_simulated_workers({"prefill": 2, "decode": 1000}, available_mib=8 * 1024)
