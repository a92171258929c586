"""The tuning loop: explore each SLA tier with Optuna, then verify the best candidates live.

Per SLA tier there are two Optuna studies in the one storage:

- `<sweep>.<tier>`: exploration trials, one deployment each, evaluated at the explore fidelity
  (replay by default). The objective is the output throughput per GPU at the highest
  concurrency that meets the SLA (or that and the throughput per user, for `pareto`). SLA slack
  is set with `trial.set_constraint`, so infeasible trials stay in the study and steer the
  sampler; crashed or saturated ones are FAIL with their reason.
- `<sweep>.<tier>.verify`: the live re-measurement of the best distinct candidates at their
  predicted load, each pointing at the trial it verifies.

Every trial's full record (deployment, probes, status, reason) is in its user attributes, so the
storage alone regenerates every report. `tune()` resumes a study that already exists.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from dynamo_bench.errors import DynamoBenchError, SpecError
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.evaluate import Evaluation, Evaluator, LiveEvaluator, ReplayEvaluator
from dynamo_bench.tune.guess import start_points
from dynamo_bench.tune.space import deployment_for, describe, knobs_from_params, suggest_params
from dynamo_bench.tune.storage import (
    TUNER_ATTR,
    open_storage,
    recover_interrupted,
    storage_url,
    tuner_id,
)
from dynamo_bench.tune.sweep import SweepSpec

STUDY_FILE = "study.yaml"
SCHEMA_VERSION = 1

#: Called after every trial: (tier, trials done, trials planned, best value or None, label).
OnTrial = Callable[[str, int, int, float | None, str], None]


class _Tagging(optuna.samplers.BaseSampler):
    """Delegates to a sampler; stamps each new trial with its tuner's id the moment Optuna
    creates it, so a trial whose tuner dies at any point afterwards can be recovered."""

    def __init__(self, inner: optuna.samplers.BaseSampler, tuner: str) -> None:
        self.inner, self.tuner = inner, tuner

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, TUNER_ATTR, self.tuner)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
        return self.inner.sample_independent(study, trial, name, distribution)

    def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class TrialFailed(DynamoBenchError):
    """Raised inside the objective so Optuna records the trial as FAIL (reason in user attrs)."""


def study_name(sweep_name: str, tier: str, verify: bool = False) -> str:
    return f"{sweep_name}.{tier}" + (".verify" if verify else "")


def make_sampler(sweep: SweepSpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sweep's sampler, seeded. TPE is multivariate and grouped: the conditional
    parameters of agg and disagg trials are modelled separately."""
    with warnings.catch_warnings():  # multivariate/group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(sweep, sweep.search.seed + seed_offset)


def _sampler(sweep: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    s = sweep.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=min(10, max(3, sweep.budget.trials
                                                                        // 5)))
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(8, min(50, sweep.budget.trials // 5)))
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    try:
        import torch  # noqa: F401  (GPSampler needs it)
    except ImportError:
        raise SpecError("search.sampler", "gp needs PyTorch (pip install torch); choose tpe, "
                        "nsga2 or random") from None
    return optuna.samplers.GPSampler(seed=seed)


def _directions(sweep: SweepSpec) -> list[str]:
    return ["maximize", "maximize"] if sweep.objective == "pareto" else ["maximize"]


def objective_values(sweep: SweepSpec, ev: Evaluation) -> list[float]:
    """Throughput per GPU (and per user for `pareto`) at the best feasible point; 0 without."""
    b = ev.best or {}
    per_gpu = float(b.get("output_tok_s_per_gpu") or 0.0)
    if sweep.objective == "pareto":
        return [per_gpu, float(b.get("output_tok_s_per_user") or 0.0)]
    return [per_gpu]


def constraint_values(sla: SLA, ev: Evaluation) -> dict[str, float]:
    """One signed slack per SLA constraint (<= 0 met) plus `memory` (> 0: does not fit)."""
    out: dict[str, float] = {}
    point = ev.best or (ev.points[0] if ev.points else None)
    for c in sla.constraints:
        if point is None or point.get(c.key) is None:
            out[c.key] = 1.0
        else:
            out[c.key] = c.slack(SimpleNamespace(**point))
    out["memory"] = ev.memory_shortfall
    return out


@dataclass
class TuneOptions:
    """Run-time choices that are not part of the sweep file (CLI flags)."""

    verify: bool | None = None  # None: the sweep's fidelity.verify
    peer: bool | None = None  # None: the sweep's `peer`
    trials: int | None = None
    wall_s: float | None = None
    on_trial: OnTrial | None = None
    explore_evaluator: Evaluator | None = None  # tests and benchmarks pass their own
    verify_evaluator: Evaluator | None = None


class Tuner:
    """Runs one sweep into one study folder. Construct, then `run()`."""

    def __init__(self, sweep: SweepSpec, folder: Path, storage: str | None = None,
                 options: TuneOptions | None = None) -> None:
        self.sweep = sweep
        self.folder = Path(folder)
        self.options = options or TuneOptions()
        self.url = storage_url(storage if storage is not None else sweep.storage, self.folder)
        self.slas = sweep.slas()
        o = self.options
        self.explorer = o.explore_evaluator or (
            ReplayEvaluator(sweep.workload, sweep.load) if sweep.fidelity.explore == "replay"
            else LiveEvaluator(sweep.workload, sweep.load))
        self.verifier = o.verify_evaluator or LiveEvaluator(sweep.workload, sweep.load)
        self.trials = o.trials or sweep.budget.trials
        self.wall_s = o.wall_s or sweep.budget.wall_s
        self.tuner = tuner_id()
        optuna.logging.set_verbosity(logging.ERROR)  # progress is reported via on_trial
        make_sampler(sweep)  # fail now on a sampler that cannot run here, before any file

    # -- setup ----------------------------------------------------------------------------

    def _write_study_file(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"schema_version": SCHEMA_VERSION, "storage": self.url, "sweep": self.sweep.name,
               "tiers": list(self.slas)}
        path = self.folder / STUDY_FILE
        if path.exists():
            old = yaml.safe_load(path.read_text()) or {}
            if old.get("storage") not in (None, self.url):
                raise SpecError("storage", f"{self.folder} already holds a study stored at "
                                f"{old['storage']} (use that storage or another --out)")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def _open(self, tier: str, verify: bool = False) -> tuple[optuna.Study, bool]:
        """The tier's study and whether this call created it.

        Only the creator (one process, even when several tuners start together) sets the
        study's attributes and enqueues the start points, and it samples with the sweep's
        seed; a tuner joining an existing study offsets the seed by its PID so that two
        tuners do not propose the same sequence.
        """
        storage = open_storage(self.url)
        name = study_name(self.sweep.name, tier, verify)
        sweep_json = self.sweep.model_dump(mode="json")
        try:
            study = optuna.create_study(storage=storage, study_name=name,
                                        sampler=_Tagging(make_sampler(self.sweep), self.tuner),
                                        directions=_directions(self.sweep))
            created = True
            study.set_user_attr("schema_version", SCHEMA_VERSION)
            study.set_user_attr("tier", tier)
            study.set_user_attr("sla", str(self.slas[tier]))
            study.set_user_attr("sweep", sweep_json)  # last: marks the study complete
        except optuna.exceptions.DuplicatedStudyError:
            created = False
            sampler = make_sampler(self.sweep, os.getpid() % 10007 + 1)
            study = optuna.load_study(storage=storage, study_name=name,
                                      sampler=_Tagging(sampler, self.tuner))
        stored = study.user_attrs.get("sweep")
        if stored is None:  # its creator died before finishing the set-up
            for key, value in (("schema_version", SCHEMA_VERSION), ("tier", tier),
                               ("sla", str(self.slas[tier])), ("sweep", sweep_json)):
                study.set_user_attr(key, value)
        elif _comparable(stored) != _comparable(sweep_json):
            raise SpecError("sweep", f"study {name!r} in {self.url} was started from a "
                            "different sweep (same name, other settings); use another --out "
                            "or name")
        return study, created

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Explore every tier, then verify; resumes whatever the storage already holds."""
        self._write_study_file()
        deadline = time.monotonic() + self.wall_s if self.wall_s else None
        tiers = list(self.slas)
        for i, tier in enumerate(tiers):
            timeout = None
            if deadline is not None:  # share what is left evenly among the remaining tiers
                timeout = max(0.0, (deadline - time.monotonic()) / (len(tiers) - i))
            self.explore(tier, timeout)
        peer = self.options.peer if self.options.peer is not None else \
            self.sweep.peer == "aiconfigurator"
        if peer:
            for tier in tiers:
                self.compare(tier)
        verify = self.options.verify if self.options.verify is not None else \
            self.sweep.fidelity.verify == "live"
        if verify and self.sweep.fidelity.explore == "replay":
            for tier in tiers:
                self.verify(tier)

    def explore(self, tier: str, timeout: float | None = None) -> optuna.Study:
        study, created = self._open(tier)
        recover_interrupted(study)
        sla = self.slas[tier]
        if created:
            arch = ModelArch.of(self.sweep.deployment["model"])
            for g in start_points(self.sweep, sla, arch, self.sweep.search.start_points):
                study.enqueue_trial(g.params, user_attrs={"start_point": True})
        done = _explored(study)
        remaining = self.trials - done
        if remaining <= 0:
            return study
        state = _Budget(self, tier)
        study.optimize(lambda t: self._objective(t, tier, sla), n_trials=remaining,
                       timeout=timeout, catch=(TrialFailed,), callbacks=[state])
        return study

    def _objective(self, trial: optuna.Trial, tier: str, sla: SLA) -> list[float] | float:
        knobs = suggest_params(trial, self.sweep)
        trial.set_user_attr("fidelity", self.explorer.fidelity)
        trial.set_user_attr("config", describe(knobs))
        if self.options.on_trial:  # show what is being evaluated now
            trials = trial.study.get_trials(deepcopy=False)
            self.options.on_trial(tier, _explored(trial.study, trials), self.trials,
                                  best_value(trials), describe(knobs))
        spec = deployment_for(self.sweep, knobs)
        trial.set_user_attr("deployment", spec.model_dump(mode="json", exclude_none=True))
        twin = _twin(trial, self.explorer.fidelity)
        if twin is not None:
            ev = Evaluation.from_attrs(twin.user_attrs["evaluation"])
            trial.set_user_attr("duplicate_of", twin.number)
        else:
            ev = self.explorer.evaluate(spec, sla, self.folder / "trials" / tier /
                                        f"{trial.number:04d}")
        return self._record(trial, sla, ev)

    def _record(self, trial: optuna.Trial, sla: SLA, ev: Evaluation) -> list[float] | float:
        trial.set_user_attr("evaluation", ev.to_attrs())
        trial.set_user_attr("status", ev.status)
        if ev.reason:
            trial.set_user_attr("reason", ev.reason)
        if ev.status == "failed":
            raise TrialFailed(ev.reason or "failed")
        for key, value in constraint_values(sla, ev).items():
            trial.set_constraint(key, value)
        values = objective_values(self.sweep, ev)
        return values if len(values) > 1 else values[0]

    # -- the peer -----------------------------------------------------------------------------

    def compare(self, tier: str) -> None:
        """Score AIConfigurator's picks for the tier next to the tier's best explored trial and
        keep the comparison with the study (`peer` attribute; tune/peer.py)."""
        from dynamo_bench.tune.peer import compare

        study, _ = self._open(tier)
        best = candidates(study, 1)
        ours = label = None
        if best:
            ours = DeploymentSpec.model_validate(best[0].user_attrs["deployment"])
            label = best[0].user_attrs.get("config")
        evaluator = self.explorer if isinstance(self.explorer, ReplayEvaluator) else None
        if self.options.on_trial:
            self.options.on_trial(f"{tier} (AIConfigurator)", 0, 1, None, "side by side")
        result = compare(self.sweep, tier, ours, label, self.folder / "peer" / tier, evaluator)
        doc = result.to_json()
        if best:
            doc["trial"] = best[0].number
        study.set_user_attr("peer", doc)

    # -- verification -------------------------------------------------------------------------

    def verify(self, tier: str) -> None:
        """Re-measure the best distinct feasible candidates live at their predicted load."""
        explored, _ = self._open(tier)
        study, _ = self._open(tier, verify=True)
        recover_interrupted(study)
        sla = self.slas[tier]
        done = {t.user_attrs.get("verifies") for t in study.trials
                if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)}
        for cand in candidates(explored, self.sweep.fidelity.verify_top):
            if cand.number in done:
                continue
            study.enqueue_trial(cand.params, user_attrs={"verifies": cand.number},
                                skip_if_exists=False)
            with warnings.catch_warnings():  # no heartbeat outside optimize(): the tuner id
                warnings.filterwarnings("ignore", message="Heartbeat of storage")  # recovers it
                trial = study.ask()
            if _claimed_elsewhere(study, trial):
                study.tell(trial, state=TrialState.PRUNED)
                continue
            try:
                self._verify_one(study, trial, cand, tier, sla)
            except BaseException:
                if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    study.tell(trial, state=TrialState.FAIL)
                raise

    def _verify_one(self, study: optuna.Study, trial: optuna.Trial,
                    cand: optuna.trial.FrozenTrial, tier: str, sla: SLA) -> None:
        knobs = suggest_params(trial, self.sweep)
        spec = deployment_for(self.sweep, knobs)
        predicted = Evaluation.from_attrs(cand.user_attrs["evaluation"])
        assert predicted.best is not None
        load = int(predicted.best["load"])
        for k, v in (("fidelity", self.verifier.fidelity),
                     ("config", describe(knobs)), ("predicted", predicted.best),
                     ("deployment", spec.model_dump(mode="json", exclude_none=True))):
            trial.set_user_attr(k, v)
        if self.options.on_trial:
            self.options.on_trial(f"{tier} (verify)", 0, 1, None, describe(knobs))
        ev = self.verifier.verify(spec, sla, load, self.folder / "verify" / tier /
                                  f"trial-{cand.number:04d}")
        try:
            values = self._record(trial, sla, ev)
        except TrialFailed:
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, values)


class _Budget:
    """Optuna callback: stop on the trial budget (across processes), patience and GPU-hours;
    report progress."""

    def __init__(self, tuner: Tuner, tier: str) -> None:
        self.tuner, self.tier = tuner, tier

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        sweep = self.tuner.sweep
        recover_interrupted(study)  # a tuner sharing the study may have died meanwhile
        trials = study.get_trials(deepcopy=False)
        done = _explored(study, trials)
        best = best_value(trials)
        if self.tuner.options.on_trial:
            self.tuner.options.on_trial(self.tier, done, self.tuner.trials, best,
                                        trial.user_attrs.get("config", ""))
        gpu_h = sum((t.user_attrs.get("evaluation") or {}).get("gpu_hours", 0.0)
                    for t in trials)
        if done >= self.tuner.trials:
            study.stop()
        elif sweep.budget.patience and since_improvement(trials) >= sweep.budget.patience:
            study.stop()
        elif sweep.budget.gpu_hours and gpu_h >= sweep.budget.gpu_hours:
            study.stop()


def _comparable(sweep_json: dict[str, Any]) -> str:
    """A sweep without the settings that may change between runs of one study."""
    d = json.loads(json.dumps(sweep_json))
    d.get("budget", {}).pop("trials", None)
    d.get("budget", {}).pop("wall_s", None)
    d.get("budget", {}).pop("patience", None)
    d.get("budget", {}).pop("gpu_hours", None)
    d.pop("storage", None)
    d.get("fidelity", {}).pop("verify", None)
    d.get("fidelity", {}).pop("verify_top", None)
    return json.dumps(d, sort_keys=True)


def _explored(study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None) -> int:
    trials = trials if trials is not None else study.get_trials(deepcopy=False)
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)
               and not str(t.user_attrs.get("reason", "")).startswith("interrupted"))


def is_feasible(t: optuna.trial.FrozenTrial) -> bool:
    """A finished trial that found a load meeting its SLA (its constraints are all <= 0)."""
    return t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "complete"


def best_value(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    vals = [t.values[0] for t in trials if is_feasible(t) and t.values]
    return max(vals) if vals else None


def since_improvement(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Finished trials since the one that set the best feasible value (all, if none did)."""
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)),
                      key=lambda t: t.number)
    best, best_i = None, -1
    for i, t in enumerate(finished):
        if is_feasible(t) and t.values and (best is None or t.values[0] > best):
            best, best_i = t.values[0], i
    return len(finished) - 1 - best_i


def _twin(trial: optuna.Trial, fidelity: str) -> optuna.trial.FrozenTrial | None:
    """A finished trial of this study with the same parameters and fidelity, if any."""
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.params == trial.params and t.user_attrs.get("fidelity") == fidelity \
                and "evaluation" in t.user_attrs:
            return t
    return None


def candidates(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The `top` feasible trials with the best first objective, one per distinct deployment."""
    seen: set[str] = set()
    out = []
    ranked = sorted((t for t in study.get_trials(deepcopy=False) if is_feasible(t)),
                    key=lambda t: (-t.values[0], t.number))
    for t in ranked:
        key = json.dumps(t.user_attrs.get("deployment"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
        if len(out) == top:
            break
    return out


def _claimed_elsewhere(study: optuna.Study, trial: optuna.Trial) -> bool:
    """True if a lower-numbered verification of the same candidate exists (another tuner)."""
    target = study._storage.get_trial(trial._trial_id).user_attrs.get("verifies")
    return any(t.number < trial.number and t.user_attrs.get("verifies") == target
               and t.state != TrialState.PRUNED for t in study.get_trials(deepcopy=False))


def tune(sweep: SweepSpec, folder: str | Path, storage: str | None = None,
         options: TuneOptions | None = None) -> Path:
    """Run (or resume) the study of `sweep` in `folder`; returns the folder."""
    Tuner(sweep, Path(folder), storage, options).run()
    return Path(folder)


__all__ = ["Tuner", "TuneOptions", "tune", "study_name", "knobs_from_params"]
