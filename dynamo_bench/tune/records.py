"""Read a study back from its storage alone, as plain pandas tables (no Optuna types).

`load_study(folder)` opens the storage the folder's `study.yaml` names and returns a
`StudyRecord`: the sweep, the SLA per tier, one row per trial (`trials`) and one row per load
point measured inside a trial (`points`). Reports are pure functions of these tables.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml

from dynamo_bench.errors import DynamoBenchError, UserError
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.storage import open_storage, redact, resolve_recorded, storage_url
from dynamo_bench.tune.sweep import SweepSpec
from dynamo_bench.tune.tuner import SCHEMA_VERSION, STUDY_FILE, study_name

#: Metrics of a trial's best point copied into its row.
BEST_FIELDS = ("ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99", "itl_ms_p50", "itl_ms_p90",
               "itl_ms_p99", "e2e_ms_p90", "output_tok_s", "output_tok_s_per_gpu",
               "output_tok_s_per_user", "request_s", "prefix_cache_hit_rate")


@dataclass
class StudyRecord:
    """Everything a study holds, as tables. `trials` has one row per trial of every tier
    (exploration and verification), `points` one row per measured load point."""

    folder: Path
    storage: str
    sweep: SweepSpec
    slas: dict[str, SLA]
    trials: pd.DataFrame
    points: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def tier_trials(self, tier: str, kind: str = "explore") -> pd.DataFrame:
        t = self.trials
        return t[(t["tier"] == tier) & (t["kind"] == kind)]


def study_storage(folder: Path) -> str:
    """The storage URL of the study in `folder` (from study.yaml, else a file beside it).
    Paths in study.yaml are relative to the folder, so a moved folder still opens."""
    doc_path = folder / STUDY_FILE
    if doc_path.exists():
        doc = yaml.safe_load(doc_path.read_text()) or {}
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DynamoBenchError(f"{doc_path} has schema version {version}; this "
                                   f"dynamo-bench reads version {SCHEMA_VERSION}")
        return resolve_recorded(str(doc["storage"]), folder)
    if (folder / "study.db").exists():
        return storage_url(None, folder)
    if (folder / "study.journal").exists():
        return storage_url("journal", folder)
    raise UserError(f"{folder}: not a study folder (no {STUDY_FILE}, study.db or "
                    "study.journal); run `dynamo-bench tune SWEEP --out FOLDER` first")


def load_study(folder: str | Path, storage: str | None = None) -> StudyRecord:
    """Read the study in `folder` (or in `storage`, for a shared database: a URL, or a
    `--storage` setting such as `journal`)."""
    folder = Path(folder)
    url = storage_url(storage, folder) if storage else study_storage(folder)
    backend = open_storage(url)
    summaries = optuna.get_all_study_summaries(backend, include_best_trial=False)
    explore = [s for s in summaries if "sweep" in s.user_attrs
               and not s.study_name.endswith(".verify")]
    if not explore:
        raise UserError(f"{redact(url)}: holds no dynamo-bench study")
    wanted = {}
    if (folder / STUDY_FILE).exists():
        wanted = yaml.safe_load((folder / STUDY_FILE).read_text()) or {}
    if wanted.get("sweep"):
        explore = [s for s in explore if s.study_name.startswith(wanted["sweep"] + ".")]
        if not explore:
            raise UserError(f"{redact(url)}: holds no study of sweep {wanted['sweep']!r} "
                            f"(named in {folder / STUDY_FILE})")
    sweep = SweepSpec.model_validate(explore[0].user_attrs["sweep"])
    slas = sweep.slas()
    trial_rows: list[dict[str, Any]] = []
    point_rows: list[dict[str, Any]] = []
    names = {s.study_name for s in summaries}
    peers: dict[str, Any] = {}
    for tier in slas:
        for kind, name in (("explore", study_name(sweep.name, tier)),
                           ("verify", study_name(sweep.name, tier, verify=True))):
            if name not in names:
                continue
            study = optuna.load_study(study_name=name, storage=backend)
            if kind == "explore" and "peer" in study.user_attrs:
                peers[tier] = study.user_attrs["peer"]
            for t in study.get_trials(deepcopy=False):
                row, pts = _rows(t, tier, kind)
                trial_rows.append(row)
                point_rows += pts
    trials = pd.DataFrame(trial_rows)
    points = pd.DataFrame(point_rows)
    return StudyRecord(folder, url, sweep, slas, trials, points,
                       meta={"tiers": list(slas), "peer": peers})


def _rows(t: optuna.trial.FrozenTrial, tier: str, kind: str
          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ua = t.user_attrs
    ev = ua.get("evaluation") or {}
    best = ev.get("best") or {}
    dep = ua.get("deployment") or {}
    row: dict[str, Any] = {
        "tier": tier, "kind": kind, "trial": t.number, "state": t.state.name,
        "status": ua.get("status", "failed" if t.state.name == "FAIL" else None),
        "reason": ua.get("reason"), "fidelity": ua.get("fidelity"), "config": ua.get("config"),
        "mode": dep.get("mode"), "gpus": _gpus(dep),
        "value": t.values[0] if t.values else None,
        "best_load": best.get("load"), "limited_by": ev.get("limited_by"),
        **{f"best_{k}": best.get(k) for k in BEST_FIELDS},
        "verifies": ua.get("verifies"), "duplicate_of": ua.get("duplicate_of"),
        "start_point": bool(ua.get("start_point", False)), "retry_of": ua.get("retry_of"),
        "elapsed_s": ev.get("elapsed_s"), "gpu_hours": ev.get("gpu_hours"),
        "started": t.datetime_start, "completed": t.datetime_complete,
        "tuner": ua.get("tuner"),
        "constraints": json.dumps({k.split(":", 1)[1]: v for k, v in t.system_attrs.items()
                                   if k.startswith("constraints:")}),
        "deployment": json.dumps(dep, sort_keys=True) if dep else None,
        "predicted": json.dumps(ua["predicted"]) if "predicted" in ua else None,
    }
    row.update({f"param_{k}": v for k, v in t.params.items()})
    points = []
    for i, p in enumerate(ev.get("points") or []):
        points.append({"tier": tier, "kind": kind, "trial": t.number, "probe": i,
                       "fidelity": ua.get("fidelity"), "config": ua.get("config"),
                       "mode": dep.get("mode"), **p})
    return row, points


def _gpus(dep: dict[str, Any]) -> int | None:
    workers = dep.get("workers") or {}
    if not workers:
        return None
    return sum(g.get("replicas", 1) * g.get("tp", 1) * g.get("pp", 1) for g in workers.values())


def param_importances(record: StudyRecord, tier: str) -> dict[str, float]:
    """PED-ANOVA importance of each parameter for the tier's objective (throughput per GPU),
    most important first; {} when the study has too few finished trials to tell."""
    study = optuna.load_study(study_name=study_name(record.sweep.name, tier),
                              storage=open_storage(record.storage))
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 4:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # PED-ANOVA warns when a target is given (it is minimized: hence the negation
            # below), when few trials fall in a region and when every trial ties; the report
            # shows the trial counts beside the importances, so these stay out of the console
            warnings.simplefilter("ignore", UserWarning)
            multi = len(study.directions) > 1
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=(lambda t: -t.values[0]) if multi else None)
    except (RuntimeError, ValueError):  # e.g. no parameter common to every trial
        return {}
    return {k: float(v) for k, v in imp.items()}
