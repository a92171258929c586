"""Pareto fronts and hypervolume against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamo_bench.report.pareto import front_table, hypervolume, pareto_mask


def brute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = []
    for i in range(len(x)):
        dominated = any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i])
                        for j in range(len(x)))
        out.append(not dominated)
    return np.array(out)


def test_front_matches_brute_force_on_random_and_tied_points() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 10, 200):
        x = rng.integers(0, 20, n).astype(float)  # integers: plenty of ties
        y = rng.integers(0, 20, n).astype(float)
        assert (pareto_mask(x, y) == brute(x, y)).all()


def test_nan_is_never_on_the_front() -> None:
    m = pareto_mask(np.array([1.0, np.nan, 0.5]), np.array([1.0, 5.0, 2.0]))
    assert m.tolist() == [True, False, True]


def test_hypervolume_of_known_shapes() -> None:
    assert hypervolume(np.array([2.0]), np.array([3.0])) == 6.0
    # a staircase: 3x1 + 2x(2-1) + 1x(3-2) = 3 + 2 + 1
    assert hypervolume(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])) == 6.0
    # a dominated point adds nothing
    assert hypervolume(np.array([3.0, 2.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0, 0.5])) == 6.0
    assert hypervolume(np.array([]), np.array([])) == 0.0


def test_front_table_is_per_tier_and_ignores_infeasible_points() -> None:
    pts = pd.DataFrame({
        "tier": ["a", "a", "a", "b"], "kind": ["explore"] * 4,
        "output_tok_s_per_user": [10.0, 20.0, 30.0, 1.0],
        "output_tok_s_per_gpu": [100.0, 50.0, 500.0, 1.0],
        "feasible": [True, True, False, True], "usable": [True, True, True, True]})
    front = front_table(pts)
    # the infeasible (30, 500) would dominate both; it is not a candidate
    assert front["on_front"].tolist() == [True, True, False, True]
