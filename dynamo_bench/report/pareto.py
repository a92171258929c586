"""Pareto fronts over measured load points. Pure functions of DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The trade-off every front shows: speed each user sees against what each GPU delivers.
X, Y = "output_tok_s_per_user", "output_tok_s_per_gpu"


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for the points no other point beats on both x and y (both maximized).

    A point is dominated when another is >= on both and > on at least one. NaNs are never on
    the front.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    mask = np.zeros(len(x), dtype=bool)
    order = np.lexsort((-y, -x))  # by x descending, then y descending
    best_y = -np.inf
    for i in order:
        if not ok[i]:
            continue
        if y[i] > best_y:
            mask[i] = True
            best_y = y[i]
    # equal points: keep every copy of a front point
    for i in np.flatnonzero(ok & ~mask):
        mask[i] = bool(np.any(mask & (x == x[i]) & (y == y[i])))
    return mask


def front_table(points: pd.DataFrame) -> pd.DataFrame:
    """`points` with `on_front` per tier and kind: the front of the feasible, usable points."""
    if points.empty:
        return points.assign(on_front=pd.Series(dtype=bool))
    out = points.copy()
    out["on_front"] = False
    for _, idx in out.groupby(["tier", "kind"]).groups.items():
        sub = out.loc[idx]
        ok = sub["feasible"].astype(bool) & sub["usable"].astype(bool)
        cand = sub[ok]
        if cand.empty:
            continue
        m = pareto_mask(cand[X].to_numpy(dtype=float), cand[Y].to_numpy(dtype=float))
        out.loc[cand.index[m], "on_front"] = True
    return out


def hypervolume(front_x: np.ndarray, front_y: np.ndarray, ref: tuple[float, float] = (0, 0)
                ) -> float:
    """Area dominated by a set of (x, y) points above the reference point (both maximized)."""
    pts = sorted(((float(a), float(b)) for a, b in zip(front_x, front_y)
                  if a > ref[0] and b > ref[1]), key=lambda p: -p[0])
    area, top = 0.0, ref[1]
    for a, b in pts:  # sweep from the largest x down; each point adds the strip above `top`
        if b > top:
            area += (a - ref[0]) * (b - top)
            top = b
    return area


def pareto_front(points: pd.DataFrame, x: str = X, y: str = Y) -> pd.DataFrame:
    """The rows of `points` on the front of `x` and `y` (both maximized), sorted by `x`.

    Rows marked `feasible == False` or `usable == False`, when those columns exist, are left
    out first.

        >>> df = pd.DataFrame({"output_tok_s_per_user": [10, 20, 15],
        ...                    "output_tok_s_per_gpu": [90, 40, 30]})
        >>> pareto_front(df).index.tolist()
        [0, 1]
    """
    keep = pd.Series(True, index=points.index)
    for col in ("feasible", "usable"):
        if col in points:
            keep &= points[col].astype(bool)
    cand = points[keep]
    mask = pareto_mask(cand[x].to_numpy(dtype=float), cand[y].to_numpy(dtype=float))
    return cand[mask].sort_values(x)
