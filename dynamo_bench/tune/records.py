"""Read a study back from its storage alone: typed trial records, and pandas tables of them.

`load_study(folder)` opens the storage the folder's `study.yaml` names and returns a
`StudyRecord`: the sweep, the SLA per tier and one `TrialRecord` per trial of every tier
(`records`). Reports are pure functions of it. For pandas users the same records are also flat
tables: `trials` (one row per trial) and `points` (one row per load point measured inside a
trial); their cells are plain values, never JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml

from dynamo_bench.errors import DynamoBenchError, UserError
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.names import SCHEMA_VERSION, STUDY_FILE, study_name
from dynamo_bench.tune.record import Kind, TrialRecord
from dynamo_bench.tune.storage import open_storage, redact, resolve_recorded, storage_url
from dynamo_bench.tune.sweep import SweepSpec

#: Metrics of a trial's best point (and of a verification's predicted point) in its row.
BEST_FIELDS = ("ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99", "itl_ms_p50", "itl_ms_p90",
               "itl_ms_p99", "e2e_ms_p90", "output_tok_s", "output_tok_s_per_gpu",
               "output_tok_s_per_user", "request_s", "prefix_cache_hit_rate")


@dataclass
class StudyRecord:
    """Everything a study holds. `records` has one `TrialRecord` per trial of every tier
    (exploration and verification, in study order, by trial number within each); `trials`
    and `points` are the same as tables (see `trial_row`, `point_rows`)."""

    folder: Path
    storage: str
    sweep: SweepSpec
    slas: dict[str, SLA]
    records: list[TrialRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    def tier_records(self, tier: str, kind: Kind = "explore") -> list[TrialRecord]:
        """The records of one tier's exploration or verification study."""
        return [r for r in self.records if r.tier == tier and r.kind == kind]

    @cached_property
    def trials(self) -> pd.DataFrame:
        """One row per trial (`trial_row`)."""
        return pd.DataFrame([trial_row(r) for r in self.records])

    @cached_property
    def points(self) -> pd.DataFrame:
        """One row per load point measured (`point_rows`)."""
        return pd.DataFrame([row for r in self.records for row in point_rows(r)])

    def tier_trials(self, tier: str, kind: str = "explore") -> pd.DataFrame:
        """The rows of `trials` of one tier's exploration or verification study."""
        t = self.trials
        return t[(t["tier"] == tier) & (t["kind"] == kind)]


def trial_row(r: TrialRecord) -> dict[str, Any]:
    """A trial as one flat row: its identity, verdict, best point (`best_*`), SLA slack per
    constraint (`constraint_*`), the predicted point of a verification (`predicted_*`) and
    its parameters (`param_*`)."""
    best = r.best
    predicted = r.predicted
    row: dict[str, Any] = {
        "tier": r.tier, "kind": r.kind, "trial": r.number, "state": r.state,
        "status": r.status, "reason": r.reason, "fidelity": r.fidelity, "config": r.config,
        "mode": r.mode, "gpus": r.gpus, "value": r.value,
        "best_load": best.load if best else None, "limited_by": r.limited_by,
        **{f"best_{k}": getattr(best, k) if best else None for k in BEST_FIELDS},
        "verifies": r.verifies, "duplicate_of": r.duplicate_of, "local_move": r.local_move,
        "start_point": r.start_point,
        "retry_of": r.retry_of, "elapsed_s": r.elapsed_s, "gpu_hours": r.gpu_hours,
        "started": r.started, "completed": r.completed, "tuner": r.tuner,
        **{f"constraint_{k}": v for k, v in r.constraints.items()},
        "predicted_load": predicted.load if predicted else None,
        **{f"predicted_{k}": getattr(predicted, k) if predicted else None
           for k in BEST_FIELDS},
    }
    row.update({f"param_{k}": v for k, v in r.params.items()})
    return row


def point_rows(r: TrialRecord) -> list[dict[str, Any]]:
    """A trial's probes as rows, in the order they ran, each with the trial's identity."""
    return [{"tier": r.tier, "kind": r.kind, "trial": r.number, "probe": i,
             "fidelity": r.fidelity, "config": r.config, "mode": r.mode, **p.model_dump()}
            for i, p in enumerate(r.probes)]


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
    records: list[TrialRecord] = []
    names = {s.study_name for s in summaries}
    peers: dict[str, Any] = {}
    for tier in slas:
        kinds: tuple[tuple[Kind, str], ...] = (
            ("explore", study_name(sweep.name, tier)),
            ("verify", study_name(sweep.name, tier, verify=True)))
        for kind, name in kinds:
            if name not in names:
                continue
            study = optuna.load_study(study_name=name, storage=backend)
            if kind == "explore" and "peer" in study.user_attrs:
                peers[tier] = study.user_attrs["peer"]
            records += [TrialRecord.from_trial(t, tier, kind)
                        for t in study.get_trials(deepcopy=False)]
    return StudyRecord(folder, url, sweep, slas, records,
                       meta={"tiers": list(slas), "peer": peers})


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
