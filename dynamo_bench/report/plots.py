"""Static plots (matplotlib, no display needed). Each takes tables and returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dynamo_bench.report.pareto import X, Y  # noqa: E402


def pareto_figure(points: pd.DataFrame, tiers: list[str], slas: dict[str, str],
                  best: dict[str, tuple[int, float] | None] | None = None) -> Figure:
    """One panel per SLA tier: every load point measured, feasible and infeasible marked,
    the front of the feasible ones drawn, live verifications and the chosen best highlighted.

    `points` is `front_table(...)` output; `best` maps tier -> (trial, load) of the answer.
    """
    n = max(1, len(tiers))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False)
    for ax, tier in zip(axes[0], tiers):
        sub = points[points["tier"] == tier] if not points.empty else points
        explore = sub[sub["kind"] == "explore"] if not sub.empty else sub
        if not explore.empty:
            ok = explore["feasible"].astype(bool) & explore["usable"].astype(bool)
            bad = explore[~ok]
            good = explore[ok]
            ax.scatter(bad[X], bad[Y], marker="x", s=14, color="#bbbbbb",
                       label=f"misses SLA ({len(bad)})")
            ax.scatter(good[X], good[Y], s=14, color="#4c78a8", alpha=0.7,
                       label=f"meets SLA ({len(good)})")
            front = good[good["on_front"]].sort_values(X)
            if not front.empty:
                ax.step(front[X], front[Y], where="post", color="#e45756", lw=1.6,
                        label="Pareto front")
        ver = sub[sub["kind"] == "verify"] if not sub.empty else sub
        if not ver.empty:
            vok = ver["feasible"].astype(bool) & ver["usable"].astype(bool)
            ax.scatter(ver[vok][X], ver[vok][Y], marker="*", s=120, color="#54a24b",
                       edgecolor="black", lw=0.5, label="verified live", zorder=5)
            ax.scatter(ver[~vok][X], ver[~vok][Y], marker="*", s=120, color="white",
                       edgecolor="#54a24b", lw=1.0, label="live: misses SLA", zorder=5)
        if best and best.get(tier) is not None and not explore.empty:
            trial, load = best[tier]  # type: ignore[misc]
            b = explore[(explore["trial"] == trial) & (explore["load"] == load)]
            if not b.empty:
                ax.scatter(b[X], b[Y], s=160, facecolor="none", edgecolor="black", lw=1.5,
                           label="chosen", zorder=6)
        ax.set_title(f"{tier}: {slas.get(tier, '')}", fontsize=10)
        ax.set_xlabel("output tok/s per user")
        ax.set_ylabel("output tok/s per GPU")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
