"""Write a study's files from its storage alone: tables, Pareto plot, best configs per tier.

    results/<study>/
      trials.parquet, trials.csv     one row per trial (params, fidelity, metrics, state, reason)
      pareto.csv, pareto.png         every load point, feasible or not, with the front per tier
      best/<tier>/deployment.yaml    runs with `dynamo-bench serve`
      best/<tier>/launch.sh          the plain commands
      best/<tier>/k8s.yaml           a DynamoGraphDeployment
      best/<tier>/tables/            the timing tables the mocker used (simulated backends)
      best/<tier>/summary.md         the config, predicted and verified metrics, the runner-up

`write_report` rewrites all of it; nothing else in the folder is touched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dynamo_bench.errors import UserError
from dynamo_bench.perf.timing import tables_for
from dynamo_bench.report.best import Candidate, Choice, answer_row, choose, chosen_points
from dynamo_bench.report.pareto import front_table
from dynamo_bench.report.plots import pareto_figure
from dynamo_bench.serving.k8s import dgd_manifest
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.serving.script import launch_script
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.tune.peer import markdown, stored
from dynamo_bench.tune.record import ProbePoint
from dynamo_bench.tune.records import StudyRecord, load_study


@dataclass
class Report:
    """What `write_report` wrote and decided: the choice per tier, its `answer_row` per tier
    (`answers`) and the files written."""

    folder: Path
    choices: dict[str, Choice]
    files: list[Path] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _k8s_name(text: str) -> str:
    name = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in name:
        name = name.replace("--", "-")
    return name[:63].strip("-") or "deployment"


#: The fields of a tier's `answer_row` in report.json.
REPORT_JSON_FIELDS = ("trial", "config", "predicted_tok_s_per_gpu", "verified_tok_s_per_gpu",
                      "verified_ok")


def best_spec(record: StudyRecord, tier: str, cand: Candidate) -> DeploymentSpec:
    data = dict(cand.deployment)
    data["name"] = _k8s_name(f"{record.sweep.name}-{tier}")
    return DeploymentSpec.model_validate(data)


def write_best(record: StudyRecord, choice: Choice, dest: Path) -> list[Path]:
    """Write `best/<tier>/` for one tier (only summary.md when nothing met the SLA)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = []
    if choice.best is not None:
        spec = best_spec(record, choice.tier, choice.best)
        dep = dest / "deployment.yaml"
        dep.write_text(f"# {choice.tier}: {record.slas[choice.tier]} (study "
                       f"{record.sweep.name}, trial {choice.best.trial})\n"
                       + yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True),
                                        sort_keys=False))
        files.append(dep)
        simulated = spec.backend == "mocker"
        model = resolve_model(spec.model, simulated=simulated, precision=spec.precision,
                              backend=spec.backend)
        tables, table_files = {}, {}
        if simulated:
            tables = tables_for(spec, model)
            (dest / "tables").mkdir()
            for role, t in tables.items():
                for src in (t.path, t.path.with_suffix(".json")):
                    if src.exists():
                        shutil.copy2(src, dest / "tables" / src.name)
                        files.append(dest / "tables" / src.name)
                table_files[role] = f"tables/{t.path.name}"
        script = dest / "launch.sh"
        script.write_text(launch_script(spec, model, tables=tables, table_files=table_files,
                                        header=f"dynamo-bench study {record.sweep.name}, "
                                        f"SLA tier {choice.tier}: {record.slas[choice.tier]}"))
        script.chmod(0o755)
        k8s = dest / "k8s.yaml"
        k8s.write_text(yaml.safe_dump(dgd_manifest(spec), sort_keys=False))
        files += [script, k8s]
    summary = dest / "summary.md"
    summary.write_text(summary_markdown(record, choice))
    files.append(summary)
    return files


def _metrics_line(point: ProbePoint | None) -> str:
    if point is None:
        return "n/a"

    def f(k: str, d: int = 1) -> str:
        v = getattr(point, k)
        return "n/a" if v is None else f"{v:.{d}f}"
    return (f"concurrency {point.load}: TTFT p90 "
            f"{f('ttft_ms_p90')} ms, ITL p90 {f('itl_ms_p90', 2)} ms, "
            f"{f('output_tok_s_per_gpu')} output tok/s per GPU, "
            f"{f('output_tok_s_per_user')} tok/s per user")


def _last(points: list[ProbePoint]) -> ProbePoint | None:
    return points[-1] if points else None


def summary_markdown(record: StudyRecord, choice: Choice) -> str:
    tier, sla = choice.tier, record.slas[choice.tier]
    s = record.sweep
    lines = [f"# {s.name}: SLA tier `{tier}`", "",
             f"- SLA: `{sla}`",
             f"- Model {s.deployment['model']} on {s.deployment.get('gpu', 'h100_sxm')}, "
             f"backend {s.backend}, at most {s.budget.gpus} GPUs",
             f"- Workload: ISL {s.workload.isl.mean if s.workload.isl else 'trace'}, "
             f"OSL {s.workload.osl.mean if s.workload.osl else 'trace'}", ""]
    statuses = [r.status for r in record.tier_records(tier, "explore")]
    cut = statuses.count("pruned")
    lines.append(f"Explored {len(statuses)} trials ({statuses.count('complete')} met the "
                 f"SLA, {statuses.count('infeasible')} did not, "
                 f"{statuses.count('failed')} failed"
                 + (f", {cut} cut short: they could not beat the best so far" if cut else "")
                 + ").")
    lines.append("")
    if choice.best is None:
        lines += ["## No configuration met this SLA", ""]
        if choice.closest is not None:
            c = choice.closest
            lines += [f"Closest: trial {c.number} ({c.config}): {c.reason}.", ""]
        lines.append("Relax the SLA, allow more GPUs, or widen the space.")
        return "\n".join(lines) + "\n"
    b = choice.best
    best_load = b.record.best.load if b.record.best is not None else None
    predicted = _last(b.record.probes_at(best_load)) if best_load is not None else None
    lines += ["## Answer", "", f"**{b.record.config}** ({b.record.gpus} GPUs, trial "
              f"{b.trial})", "",
              f"- Predicted ({b.record.fidelity}): {_metrics_line(predicted)}"]
    if b.verified is not None:
        v = _last(b.verified.probes)
        status = "meets the SLA" if b.verified_ok else f"**{b.verified.reason}**"
        lines.append(f"- Verified (live): {_metrics_line(v)}; {status}")
        if predicted and v:
            diffs = []
            for k, label in (("ttft_ms_p90", "TTFT p90"), ("itl_ms_p90", "ITL p90"),
                             ("output_tok_s_per_gpu", "tok/s per GPU")):
                p, got = getattr(predicted, k), getattr(v, k)
                if p and got is not None:
                    diffs.append(f"{label} {(got / p - 1) * 100:+.1f}%")
            lines.append("- Live vs predicted: " + ", ".join(diffs))
    else:
        lines.append(f"- {choice.verdict[0].upper()}{choice.verdict[1:]} (verify with "
                     "`dynamo-bench tune ... --verify`)")
    lines += ["", "Files: `deployment.yaml` (`dynamo-bench serve deployment.yaml`), "
              "`launch.sh`, `k8s.yaml`" + (", `tables/`" if record.sweep.backend == "mocker"
                                          else "") + ".", ""]
    if choice.runner_up is not None:
        r = choice.runner_up
        lines += ["## Runner-up", "", f"{r.record.config} (trial {r.trial}): "
                  f"{choice.why_runner_up_lost}.", ""]
    peer = stored(record.meta, tier)
    if peer is not None:
        lines += [markdown(peer)]
    return "\n".join(lines)


def write_report(folder: str | Path, storage: str | None = None, html: bool = False) -> Report:
    """Regenerate every file of the study folder from its storage (see the module doc); with
    `html`, also the self-contained `report.html`."""
    folder = Path(folder)
    record = load_study(folder, storage)
    if record.trials.empty:
        raise UserError(f"{folder}: the study has no trials yet")
    report = Report(folder, {})
    trials = record.trials.copy()
    for col in ("started", "completed"):
        trials[col] = pd.to_datetime(trials[col])
    trials.to_parquet(folder / "trials.parquet", index=False)
    trials.to_csv(folder / "trials.csv", index=False)
    report.files += [folder / "trials.parquet", folder / "trials.csv"]
    front = front_table(record.points)
    front.to_csv(folder / "pareto.csv", index=False)
    report.files.append(folder / "pareto.csv")
    tiers = list(record.slas)
    for tier in tiers:
        choice = choose(record, tier)
        report.choices[tier] = choice
        report.answers[tier] = answer_row(record, choice)
        report.files += write_best(record, choice, folder / "best" / tier)
    chosen = chosen_points(report.choices)
    fig = pareto_figure(front, tiers, {t: str(s) for t, s in record.slas.items()}, chosen)
    fig.savefig(folder / "pareto.png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    report.files.append(folder / "pareto.png")
    (folder / "report.json").write_text(json.dumps(
        {"tiers": {t: (None if a["trial"] is None else {k: a[k] for k in REPORT_JSON_FIELDS})
                   for t, a in report.answers.items()},
         "aiconfigurator": {t: record.meta.get("peer", {}).get(t) for t in tiers}},
        indent=2, default=str) + "\n")
    report.files.append(folder / "report.json")
    if html:
        from dynamo_bench.report.html import write_html

        report.files.append(write_html(record, report.choices, folder / "report.html"))
    return report
