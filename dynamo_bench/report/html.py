"""One self-contained HTML page per study: the question, the answer per SLA tier, the plots.

Everything is inline (CSS, PNG plots as data URIs, a few lines of script that mark the page
`data-plots-ok` once every plot has decoded), so the file can be mailed or attached as is.
Built from the study's storage alone, like every other report file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from dynamo_bench.report.best import Choice, chosen_points
from dynamo_bench.report.pareto import front_table
from dynamo_bench.report.plots import (
    error_figure,
    history_figure,
    importance_figure,
    latency_figure,
    pareto_figure,
)
from dynamo_bench.tune.record import ProbePoint
from dynamo_bench.tune.records import StudyRecord, param_importances
from dynamo_bench.tune.storage import redact

ERROR_METRICS = (("ttft_ms_p90", "TTFT p90"), ("itl_ms_p90", "ITL p90"),
                 ("output_tok_s_per_gpu", "tok/s per GPU"),
                 ("output_tok_s_per_user", "tok/s per user"))

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1150px;color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .55rem;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.muted{color:#777}.ok{color:#2b7a2b}.bad{color:#b3261e}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}code{background:#f4f4f4;padding:0 .25rem}
.tier{border:1px solid #ddd;border-radius:6px;padding:.4rem 1rem;margin:.8rem 0}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.plot'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-plots', imgs.length);
  document.body.setAttribute('data-plots-ok', ok);
});
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(fig: Figure, caption: str, name: str) -> str:
    return (f'<figure><img class="plot" id="plot-{name}" alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{_png(fig)}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], left: tuple[str, ...] = ()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(rows[0])
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>'
                   for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_fmt(r[c])}'
                                    "</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def prediction_errors(record: StudyRecord, choices: dict[str, Choice]) -> pd.DataFrame:
    """One row per (verified candidate, metric): predicted, verified, error in percent, from
    each completed verification's probe at the predicted load."""
    rows = []
    for v in record.records:
        if v.kind != "verify" or v.predicted is None or v.state != "COMPLETE":
            continue
        predicted = v.predicted
        live = v.probes_at(predicted.load)
        if not live:
            continue
        got = live[0]
        for key, label in ERROR_METRICS:
            p, g = getattr(predicted, key), getattr(got, key)
            if p and g is not None:
                rows.append({"tier": v.tier, "candidate": f"{v.tier}: trial {v.verifies}",
                             "metric": label, "load": predicted.load, "predicted": float(p),
                             "verified": float(g), "error_pct": (float(g) / float(p) - 1) * 100})
    return pd.DataFrame(rows)


def _question(record: StudyRecord) -> str:
    s = record.sweep
    w = s.workload
    space = s.space.model_dump(exclude_none=True, exclude_defaults=False)
    searched = ", ".join(f"{k}: {v}" for k, v in space.items()
                         if k not in ("agg", "prefill", "decode", "router") and v)
    rows = [
        ("model", s.deployment["model"]), ("GPU", s.deployment.get("gpu", "h100_sxm")),
        ("backend", s.backend), ("precision", s.deployment.get("precision", "bf16")),
        ("GPU budget", f"{s.budget.min_gpus}-{s.budget.gpus} GPUs per deployment"),
        ("workload", f"ISL {w.isl.mean if w.isl else 'trace'}, OSL "
                     f"{w.osl.mean if w.osl else 'trace'}"
                     + (f", shared prefix {w.prefix.length} x {w.prefix.pool_size}"
                        if w.prefix else "")),
        ("SLA tiers", "; ".join(f"{t}: {sla}" for t, sla in record.slas.items())),
        ("objective", s.objective.replace("_", " ")),
        ("searched", searched + f"; router: {', '.join(s.space.router.mode)}"),
        ("fidelity", f"explore {s.fidelity.explore}, verify {s.fidelity.verify} "
                     f"(top {s.fidelity.verify_top})"),
        ("trials", f"{sum(r.kind == 'explore' for r in record.records)} explored, "
                   f"{sum(r.kind == 'verify' for r in record.records)} verified live"),
    ]
    body = "".join(f'<tr><th class="l">{html.escape(k)}</th><td class="l">{html.escape(str(v))}'
                   "</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _answer(record: StudyRecord, choice: Choice) -> str:
    tier = choice.tier
    out = [f'<div class="tier"><h3>{html.escape(tier)} <span class="muted">'
           f"{html.escape(str(record.slas[tier]))}</span></h3>"]
    if choice.best is None:
        out.append('<p class="bad">No configuration met this SLA.</p>')
        if choice.closest is not None:
            c = choice.closest
            out.append(f"<p>Closest: trial {c.number} "
                       f"(<code>{html.escape(str(c.config))}</code>): "
                       f"{html.escape(str(c.reason))}</p>")
        return "".join(out) + "</div>"
    b = choice.best
    out.append(f"<p><b><code>{html.escape(str(b.record.config))}</code></b> — "
               f"{b.record.gpus} GPUs, trial {b.trial}</p>")
    rows = []
    best_load = b.record.best.load if b.record.best is not None else None
    pred = b.record.probes_at(best_load) if best_load is not None else []
    if pred:
        rows.append({"": f"predicted ({b.record.fidelity})", **_metric_cells(pred[0])})
    if b.verified is not None:
        live = b.verified.probes
        ok = [p for p in live if p.feasible]
        shown = sorted(ok, key=lambda p: p.load)[-1] if ok else (live[-1] if live else None)
        if shown is not None:
            rows.append({"": "verified (live)", **_metric_cells(shown)})
    out.append(_table(rows, left=("",)))
    if b.verified is None:
        out.append(f'<p class="muted">{html.escape(choice.verdict)}</p>')
    elif b.verified_ok:
        out.append('<p class="ok">meets the SLA live</p>')
    else:
        out.append(f'<p class="bad">live: {html.escape(str(b.verified.reason))}</p>')
    files = [f"best/{tier}/{n}" for n in ("deployment.yaml", "launch.sh", "k8s.yaml",
                                          "summary.md")]
    out.append("<p>Files: " + ", ".join(f'<a href="{f}"><code>{f}</code></a>' for f in files)
               + f" — <code>dynamo-bench serve {html.escape(str(record.folder))}/best/"
               f"{html.escape(tier)}/deployment.yaml</code></p>")
    if choice.runner_up is not None:
        out.append(f"<p class=\"muted\">Runner-up: <code>"
                   f"{html.escape(str(choice.runner_up.record.config))}</code> — "
                   f"{html.escape(str(choice.why_runner_up_lost))}</p>")
    return "".join(out) + "</div>"


def _metric_cells(p: ProbePoint) -> dict[str, Any]:
    return {"concurrency": int(p.load), "TTFT p90 ms": p.ttft_ms_p90,
            "ITL p90 ms": p.itl_ms_p90, "tok/s per GPU": p.output_tok_s_per_gpu,
            "tok/s per user": p.output_tok_s_per_user}


def _peer(record: StudyRecord, tier: str) -> str:
    from dynamo_bench.tune.peer import EVALUATORS, stored, table_rows

    c = stored(record.meta, tier)
    head = f"<h3>{html.escape(tier)}</h3>"
    if c is None:
        return head + "<p class='muted'>Not run for this study.</p>"
    if c.skipped:
        return head + f"<p class='muted'>Not compared: {html.escape(c.skipped)}.</p>"
    rows = [{k: r[k] for k in ("tool", "pick", "evaluator", "tok/s/GPU", "tok/s/user",
                               "TTFT p90 ms", "ITL p90 ms", "vs AIConfigurator's best",
                               "AIConfigurator's estimate")} for r in table_rows(c)]
    ratios = ", ".join(f"{e}: {c.ratio(e):.2f}x" for e in EVALUATORS if c.ratio(e) is not None)
    return (head + f"<p>AIConfigurator {html.escape(str(c.aiconfigurator_version))}'s best "
            "picks, scored by the same evaluators and load search. dynamo-bench's pick / "
            f"AIConfigurator's best: {html.escape(ratios or '-')}.</p>"
            + _table(rows, left=("tool", "pick", "evaluator")))


def html_report(record: StudyRecord, choices: dict[str, Choice]) -> str:
    """The whole page as a string."""
    tiers = list(record.slas)
    front = front_table(record.points)
    chosen = chosen_points(choices)
    curves: dict[str, list[tuple[str, int, str]]] = {}
    for t, c in choices.items():
        curves[t] = []
        if c.best is not None:
            curves[t].append((f"answer (trial {c.best.trial})", c.best.trial, "explore"))
            if c.best.verified is not None:
                curves[t].append(("answer, live", c.best.verified.number, "verify"))
        if c.runner_up is not None:
            curves[t].append((f"runner-up (trial {c.runner_up.trial})", c.runner_up.trial,
                              "explore"))
    limits = {t: {c.key: c.threshold for c in sla.constraints} for t, sla in record.slas.items()}
    errors = prediction_errors(record, choices)
    sections = [
        f"<h1>{html.escape(record.sweep.name)}</h1><p class='muted'>dynamo-bench study in "
        f"<code>{html.escape(str(record.folder))}</code>, storage "
        f"<code>{html.escape(redact(record.storage))}</code></p>",
        "<h2>The question</h2>", _question(record),
        "<h2>The answer</h2>", *(_answer(record, choices[t]) for t in tiers),
        "<h2>Side by side with AIConfigurator</h2>", *(_peer(record, t) for t in tiers),
        "<h2>Pareto fronts</h2>",
        _figure(pareto_figure(front, tiers, {t: str(s) for t, s in record.slas.items()},
                              chosen),
                "Every load point measured: SLA met (blue) or missed (grey x); the front of "
                "the feasible ones (red); live verifications (stars); the answer (circle).",
                "pareto"),
        "<h2>Latency against load</h2>",
        _figure(latency_figure(record.points, curves, limits),
                "TTFT and ITL p90 by concurrency for the answer, its live verification and the "
                "runner-up; dashed: the SLA.", "latency"),
        "<h2>Optimization history</h2>",
        _figure(history_figure(record.trials, tiers),
                "Objective by trial: feasible trials, infeasible ones at 0, failures, and the "
                "best feasible value so far.", "history"),
        "<h2>Parameter importance</h2>",
        _figure(importance_figure({t: param_importances(record, t) for t in tiers},
                                  {t: sum(r.state == "COMPLETE"
                                          for r in record.tier_records(t, "explore"))
                                   for t in tiers}),
                "Which parameters explain the throughput per GPU (PED-ANOVA over the "
                "completed trials).", "importance"),
        "<h2>Predicted vs verified</h2>",
        _figure(error_figure(errors), "Live measurement against the replay's prediction at "
                "the same load, per verified candidate.", "errors"),
        _table([{k: r[k] for k in ("candidate", "metric", "load", "predicted", "verified",
                                   "error_pct")} for _, r in errors.iterrows()],
               left=("candidate", "metric")),
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(record.sweep.name)} — dynamo-bench</title>"
            f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>"
            + "\n".join(sections) + "</body></html>\n")


def write_html(record: StudyRecord, choices: dict[str, Choice], path: Path) -> Path:
    path.write_text(html_report(record, choices), encoding="utf-8")
    return path
