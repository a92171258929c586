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


def latency_figure(points: pd.DataFrame, curves: dict[str, list[tuple[str, int, str]]],
                   slas: dict[str, dict[str, float]]) -> Figure:
    """TTFT p90 and ITL p90 against concurrency for chosen trials, one row per tier.

    `curves` maps tier -> [(label, trial, kind)]; `slas` maps tier -> {"ttft_ms_p90": limit,
    ...} drawn as dashed lines.
    """
    tiers = list(curves)
    fig, axes = plt.subplots(max(1, len(tiers)), 2, figsize=(10.5, 3.6 * max(1, len(tiers))),
                             squeeze=False)
    for row, tier in zip(axes, tiers):
        for (label, trial, kind), color in zip(curves[tier], ("#4c78a8", "#f58518", "#54a24b",
                                                              "#b279a2")):
            sub = points[(points["tier"] == tier) & (points["trial"] == trial)
                         & (points["kind"] == kind)].sort_values("load")
            if sub.empty:
                continue
            style = "*" if kind == "verify" else ("--s" if label.startswith("runner") else "-o")
            for ax, metric in zip(row, ("ttft_ms_p90", "itl_ms_p90")):
                ax.plot(sub["load"], sub[metric], style, color=color, ms=5 if kind ==
                        "explore" else 12, label=label)
        for ax, metric, name in zip(row, ("ttft_ms_p90", "itl_ms_p90"),
                                    ("TTFT p90 (ms)", "ITL p90 (ms)")):
            limit = slas.get(tier, {}).get(metric)
            if limit is not None:
                ax.axhline(limit, ls="--", color="#e45756", lw=1, label=f"SLA {limit:g} ms")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrency")
            ax.set_ylabel(name)
            ax.set_title(f"{tier}: {name}", fontsize=10)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def history_figure(trials: pd.DataFrame, tiers: list[str]) -> Figure:
    """Objective value by trial number per tier: met the SLA, missed it, failed; best so far."""
    fig, axes = plt.subplots(1, max(1, len(tiers)), figsize=(5.2 * max(1, len(tiers)), 3.6),
                             squeeze=False)
    for ax, tier in zip(axes[0], tiers):
        t = trials[(trials["tier"] == tier) & (trials["kind"] == "explore")].sort_values(
            "trial")
        ok = t["status"] == "complete"
        ax.scatter(t[ok]["trial"], t[ok]["value"], s=16, color="#4c78a8", label="meets SLA")
        bad = t["status"] == "infeasible"
        ax.scatter(t[bad]["trial"], [0] * int(bad.sum()), marker="x", s=16, color="#999999",
                   label="misses SLA / does not fit")
        cut = t["status"] == "pruned"
        if cut.any():
            ax.scatter(t[cut]["trial"], [0] * int(cut.sum()), marker="|", s=22,
                       color="#bbbbbb", label="cut short (cannot beat the best)")
        failed = t["state"] == "FAIL"
        ax.scatter(t[failed]["trial"], [0] * int(failed.sum()), marker="v", s=22,
                   color="#e45756", label="failed")
        best = t["value"].where(ok).cummax().ffill()
        ax.step(t["trial"], best, where="post", color="#f58518", label="best so far")
        ax.set_title(tier, fontsize=10)
        ax.set_xlabel("trial")
        ax.set_ylabel("output tok/s per GPU at the SLA")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def importance_figure(importances: dict[str, dict[str, float]],
                      trials: dict[str, int] | None = None) -> Figure:
    """Horizontal bars of each tier's parameter importances (PED-ANOVA)."""
    tiers = list(importances)
    fig, axes = plt.subplots(1, max(1, len(tiers)), figsize=(5.2 * max(1, len(tiers)), 3.2),
                             squeeze=False)
    for ax, tier in zip(axes[0], tiers):
        imp = importances[tier]
        if imp:
            names = list(imp)[::-1]
            ax.barh(names, [imp[n] for n in names], color="#4c78a8")
        else:
            ax.text(0.5, 0.5, "too few trials", ha="center", va="center",
                    transform=ax.transAxes)
        n = (trials or {}).get(tier)
        ax.set_title(tier if n is None else f"{tier} ({n} completed trials)", fontsize=10)
        ax.set_xlabel("importance")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def error_figure(errors: pd.DataFrame) -> Figure:
    """Live minus predicted, in percent of predicted, per verified candidate and metric."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    if errors.empty:
        ax.text(0.5, 0.5, "nothing verified live", ha="center", va="center",
                transform=ax.transAxes)
    else:
        metrics = list(dict.fromkeys(errors["metric"]))
        labels = list(dict.fromkeys(errors["candidate"]))
        width = 0.8 / max(1, len(labels))
        for i, lab in enumerate(labels):
            sub = errors[errors["candidate"] == lab].set_index("metric")
            xs = [m + i * width for m in range(len(metrics))]
            ax.bar(xs, [sub["error_pct"].get(m, 0.0) for m in metrics], width, label=lab)
        ax.set_xticks([m + width * (len(labels) - 1) / 2 for m in range(len(metrics))])
        ax.set_xticklabels(metrics)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("live vs predicted (%)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
