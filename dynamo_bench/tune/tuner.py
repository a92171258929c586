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

A study folder belongs to one study: before anything runs or is written, `Tuner.run` refuses
another sweep, or the same sweep with other settings, in a folder (or storage) that holds one.
Ctrl-C, SIGTERM and SIGHUP unwind the running trial (its stack is torn down), fail it with
reason `interrupted` and re-queue it, then raise `Interrupted`, whose message says how to resume.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml
from optuna.trial import TrialState

from dynamo_bench.errors import DynamoBenchError, SpecError
from dynamo_bench.loadgen.preflight import check_trace
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.evaluate import Evaluation, Evaluator, LiveEvaluator, ReplayEvaluator
from dynamo_bench.tune.guess import start_points
from dynamo_bench.tune.local import Evaluated
from dynamo_bench.tune.space import (
    complete_params,
    deployment_for,
    describe,
    knobs_from_params,
    suggest_params,
)
from dynamo_bench.tune.storage import (
    TUNER_ATTR,
    interrupt_trials,
    interrupted_reason,
    open_storage,
    recorded_url,
    recover_interrupted,
    redact,
    resolve_recorded,
    same_storage,
    storage_url,
    tuner_id,
)
from dynamo_bench.tune.sweep import SweepSpec
from dynamo_bench.tune.names import SCHEMA_VERSION, STUDY_FILE, study_name
from dynamo_bench.tune.ranking import rank_candidates
from dynamo_bench.tune.record import ProbePoint, TrialRecord

#: Every this many distinct evaluations, the next trial is an unexplored neighbour of the best
#: feasible trials (tune/local.py: `neighbour_move`) rather than the sampler's proposal. On the
#: search benchmark (tests/benchmarks/bench_search.py) 4 beat 3, 6 and none.
LOCAL_EVERY = 4

#: Called after every trial: (tier, trials done, trials planned, best value or None, label).
@dataclass(frozen=True)
class TuneEvent:
    """What the tuner is doing, for a progress display (`TuneOptions.on_trial`).

    One stage of one tier: `explore` (trials), `compare` (the side by side with
    AIConfigurator) or `verify` (live measurements of the best candidates). `best` and
    `best_config` are the best feasible value (output tok/s/GPU) and the configuration that
    set it, `current` the configuration being evaluated now ("" between evaluations), and
    `finished` says why the stage ended, once it has.
    """

    tier: str
    stage: Literal["explore", "compare", "verify"]
    done: int
    total: int
    best: float | None = None
    best_config: str = ""
    current: str = ""
    finished: str | None = None


OnTrial = Callable[[TuneEvent], None]


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


class Interrupted(KeyboardInterrupt):
    """The tuner was stopped by Ctrl-C or a signal; the trial it was running is re-queued.
    `str()` is the one line to show: how to resume and how many finished trials are kept."""

    def __init__(self, why: str, kept: int) -> None:
        self.why, self.kept = why, kept
        super().__init__(f"interrupted; rerun the same command to resume ({kept} trials kept)")


class _Stopped(KeyboardInterrupt):
    """SIGTERM/SIGHUP as an exception in the main thread, so that every `with` block (the stack
    under evaluation) unwinds and tears down."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped(f"received {signal.Signals(signum).name}")


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
            out[c.key] = c.slack(ProbePoint.model_validate(point))
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
        self.recorded = _read_study_file(self.folder)
        setting = storage if storage is not None else sweep.storage
        if setting is None and self.recorded.get("storage"):
            # resuming: the storage the folder names (a moved folder's paths resolve here)
            self.url = resolve_recorded(str(self.recorded["storage"]), self.folder)
        else:
            self.url = storage_url(setting, self.folder)
        self._storage: optuna.storages.BaseStorage | None = None
        self._current: optuna.Study | None = None
        self._verified = self._to_verify = 0  # progress of the tier being verified
        self.slas = sweep.slas()
        o = self.options
        self.explorer = o.explore_evaluator or (
            ReplayEvaluator(sweep.workload, sweep.load) if sweep.fidelity.explore == "replay"
            else LiveEvaluator(sweep.workload, sweep.load))
        self.verifier = o.verify_evaluator or LiveEvaluator(sweep.workload, sweep.load)
        self.trials = o.trials or sweep.budget.trials
        self.wall_s = o.wall_s or sweep.budget.wall_s
        self.tuner = tuner_id()
        self._seen: dict[str, Evaluated] = {}  # per tier: the configurations evaluated
        self._exhausted: set[str] = set()  # tiers whose space has nothing left to evaluate
        optuna.logging.set_verbosity(logging.ERROR)  # progress is reported via on_trial
        make_sampler(sweep)  # fail now on a sampler that cannot run here, before any file
        check_trace(sweep.workload)  # a missing or malformed trace, before any trial

    # -- setup ----------------------------------------------------------------------------

    def _check_folder(self) -> None:
        """Refuse, before anything runs or is written, a folder or storage that holds another
        study: another sweep, or this sweep's name with other settings (every tier); then open
        the storage (a storage that fails to open leaves nothing behind)."""
        old = self.recorded
        fix = f"give another --out (or delete {self.folder} to start over)"
        if old.get("sweep") not in (None, self.sweep.name):
            raise SpecError("", f"{self.folder} holds the study of sweep {old['sweep']!r}; a "
                            f"study folder belongs to one study, so sweep {self.sweep.name!r} "
                            f"cannot run there: {fix}")
        if old.get("storage") and not same_storage(
                resolve_recorded(str(old["storage"]), self.folder), self.url, self.folder):
            raise SpecError("storage", f"{self.folder} holds a study stored at "
                            f"{redact(str(old['storage']))}, not {redact(self.url)}: give that "
                            f"storage (or no --storage), or {fix}")
        made = not self.folder.exists()
        if self.url.startswith("sqlite:") and _inside_folder(self.url, self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)  # SQLite makes no folders
        try:
            self._storage = open_storage(self.url)
        except BaseException:
            if made and self.folder.is_dir() and not any(self.folder.iterdir()):
                self.folder.rmdir()
            raise
        local = _inside_folder(self.url, self.folder)
        mine = self.sweep.model_dump(mode="json")
        tier_names = {study_name(self.sweep.name, t, v) for t in self.slas for v in (False, True)}
        for s in optuna.get_all_study_summaries(self._storage, include_best_trial=False):
            stored = s.user_attrs.get("sweep")
            if stored is None:
                continue
            if s.study_name in tier_names or s.study_name.startswith(self.sweep.name + "."):
                if _comparable(stored) != _comparable(mine):
                    where = self.folder if local else redact(self.url)
                    raise SpecError("sweep", f"{where} holds sweep {self.sweep.name!r} run "
                                    f"with different settings ({_differences(stored, mine)}"
                                    f"); {fix}, or give the changed sweep another name")
            elif local and not old.get("sweep"):
                other = str(stored.get("name") or s.study_name.split(".")[0])
                raise SpecError("", f"{self.folder} holds the study of sweep {other!r}; a "
                                f"study folder belongs to one study, so sweep "
                                f"{self.sweep.name!r} cannot run there: {fix}")

    def _write_study_file(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"schema_version": SCHEMA_VERSION,
               "storage": recorded_url(self.url, self.folder), "sweep": self.sweep.name,
               "tiers": list(self.slas)}
        (self.folder / STUDY_FILE).write_text(
            "# storage: paths relative to this folder; no password is kept (give --storage\n"
            "# again, or set DYNAMO_BENCH_STORAGE_PASSWORD)\n"
            + yaml.safe_dump(doc, sort_keys=False))

    def _open(self, tier: str, verify: bool = False) -> tuple[optuna.Study, bool]:
        """The tier's study and whether this call created it.

        Only the creator (one process, even when several tuners start together) sets the
        study's attributes and enqueues the start points, and it samples with the sweep's
        seed; a tuner joining an existing study offsets the seed by its PID so that two
        tuners do not propose the same sequence.
        """
        if self._storage is None:
            self._storage = open_storage(self.url)
        storage = self._storage
        name = study_name(self.sweep.name, tier, verify)
        sweep_json = self.sweep.model_dump(mode="json")
        if sweep_json.get("storage"):  # the sweep's own storage URL: never its password
            sweep_json["storage"] = redact(sweep_json["storage"])
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
            raise SpecError("sweep", f"study {name!r} in {redact(self.url)} was started from a "
                            "different sweep (same name, other settings); use another --out "
                            "or name")
        return study, created

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Explore every tier, then verify; resumes whatever the storage already holds.

        Raises `Interrupted` on Ctrl-C, SIGTERM or SIGHUP, after re-queueing the running trial.
        """
        self._check_folder()
        self._write_study_file()
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                handlers[sig] = signal.signal(sig, _raise_stopped)
        try:
            self._run()
        except KeyboardInterrupt as e:
            self._interrupted(e)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _interrupted(self, e: KeyboardInterrupt) -> None:
        """Fail and re-queue the trial that was running, then raise `Interrupted`."""
        why = str(e).removeprefix("received ") or "Ctrl-C"
        quiet: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one waits
                quiet[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            if self._current is not None:
                interrupt_trials(self._current, self.tuner, interrupted_reason(e))
            kept = 0
            names = {s.study_name for s in optuna.get_all_study_summaries(
                self._storage, include_best_trial=False)} if self._storage else set()
            for tier in self.slas:
                if study_name(self.sweep.name, tier) in names:
                    kept += _explored(optuna.load_study(
                        study_name=study_name(self.sweep.name, tier), storage=self._storage))
        finally:
            for sig, handler in quiet.items():
                signal.signal(sig, handler)
        raise Interrupted(why, kept) from None

    def _run(self) -> None:
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
        self._current = study
        recover_interrupted(study)
        sla = self.slas[tier]
        if created:
            for params in self._start_points(sla):
                study.enqueue_trial(params, user_attrs={"start_point": True})
        done = _explored(study)
        remaining = self.trials - done
        if remaining <= 0:
            return study
        state = _Budget(self, tier)
        # the budget counts distinct evaluations (the callback stops the study); re-proposals
        # are answered from their twin, so the trial count has a looser bound of its own
        study.optimize(lambda t: self._guarded(t, tier, sla), n_trials=4 * remaining + 20,
                       timeout=timeout, catch=(TrialFailed,), callbacks=[state])
        if state.stopped is None and timeout is not None and self.options.on_trial:
            # Optuna's timeout ended it
            trials = study.get_trials(deepcopy=False)
            done = _explored(study, trials)
            if done < self.trials:
                best, best_config = _best(trials)
                self.options.on_trial(TuneEvent(tier, "explore", done, self.trials, best,
                                                best_config, finished="wall time"))
        return study

    def _start_points(self, sla: SLA) -> list[dict[str, Any]]:
        """Configurations to evaluate first: the closed-form model's best layouts of each mode
        (tune/guess.py), re-ranked by the explorer's own cheap estimate where it has one (a
        single replay at the guessed load), agg and disagg alike; the best
        `search.start_points` by the estimate, then the closed form's favourite of each mode
        where the estimate ranked it lower (one replay at a guessed load can miss a layout by
        a third either way, so both cheap models get a say)."""
        n = self.sweep.search.start_points
        if n <= 0:
            return []
        arch = ModelArch.of(self.sweep.deployment["model"])
        guesses = start_points(self.sweep, sla, arch, None)
        mine = [g for mode in ("agg", "disagg")  # the best few of each mode
                for g in [g for g in guesses if g.mode == mode][:2 * n]]
        if not mine:
            return []
        pool = [complete_params(self.sweep, g.params) for g in mine]
        specs = [deployment_for(self.sweep, knobs_from_params(self.sweep, p)) for p in pool]
        scores = self.explorer.estimates(specs, sla)
        estimated = scores is not None
        if scores is None:  # no cheap estimate: the closed form's order
            scores = [g.tok_s_per_gpu for g in mine]
        order = sorted(range(len(pool)), key=lambda i: (-scores[i], i))
        chosen = order[:n]
        if estimated:
            for mode in ("agg", "disagg"):
                first = next((i for i, g in enumerate(mine) if g.mode == mode), None)
                if first is not None and first not in chosen:
                    chosen.append(first)
        return [pool[i] for i in chosen]

    def _guarded(self, trial: optuna.Trial, tier: str, sla: SLA) -> list[float] | float:
        """The objective; a trial stopped by Ctrl-C or a signal is marked interrupted before
        Optuna fails it (a finished trial takes no attributes), and re-queued by `run`."""
        try:
            return self._objective(trial, tier, sla)
        except KeyboardInterrupt as e:
            _mark_interrupted(trial, e)
            raise

    def _objective(self, trial: optuna.Trial, tier: str, sla: SLA) -> list[float] | float:
        knobs = suggest_params(trial, self.sweep)
        trial.set_user_attr("fidelity", self.explorer.fidelity)
        trial.set_user_attr("config", describe(knobs))
        trials = trial.study.get_trials(deepcopy=False)
        if self.options.on_trial:  # show what is being evaluated now
            best, best_config = _best(trials)
            self.options.on_trial(TuneEvent(tier, "explore", _explored(trial.study, trials),
                                            self.trials, best, best_config, describe(knobs)))
        spec = deployment_for(self.sweep, knobs)
        deployment = spec.model_dump(mode="json", exclude_none=True)
        trial.set_user_attr("deployment", deployment)
        seen = self._evaluated(tier)
        seen.sync(trials)
        twin = seen.twin(deployment)
        if twin is not None:  # answered from the earlier trial; the next one moves on
            ev = Evaluation.from_attrs(trial.study.trials[twin].user_attrs["evaluation"])
            trial.set_user_attr("duplicate_of", twin)
            move = seen.next_move(trials)
            if move is None:
                self._exhausted.add(tier)
            else:
                trial.study.enqueue_trial(move, user_attrs={"local_move": True})
        else:
            ev = self.explorer.evaluate(spec, sla, self.folder / "trials" / tier /
                                        f"{trial.number:04d}", incumbent=self._incumbent(trials))
            if _local_turn(trials, self.trials):
                move = seen.neighbour_move(trials)
                if move is not None:
                    trial.study.enqueue_trial(move, user_attrs={"local_move": True})
        return self._record(trial, sla, ev)

    def _incumbent(self, trials: list[optuna.trial.FrozenTrial]) -> float | None:
        """The value a trial must beat to matter (the tier's best feasible so far), or None
        when trials are not cut short (`search.cut_short` off, or a Pareto objective)."""
        if not self.sweep.search.cut_short or self.sweep.objective != "throughput_per_gpu":
            return None
        return _best(trials)[0]

    def _evaluated(self, tier: str) -> Evaluated:
        if tier not in self._seen:
            self._seen[tier] = Evaluated(self.sweep, self.explorer.fidelity,
                                         self.sweep.search.seed)
        return self._seen[tier]

    def _record(self, trial: optuna.Trial, sla: SLA, ev: Evaluation) -> list[float] | float:
        trial.set_user_attr("evaluation", ev.to_attrs())
        trial.set_user_attr("status", ev.status)
        if ev.reason:
            trial.set_user_attr("reason", ev.reason)
        if ev.status == "failed":
            raise TrialFailed(ev.reason or "failed")
        values = objective_values(self.sweep, ev)
        for key, value in constraint_values(sla, ev).items():
            trial.set_constraint(key, value)
        if ev.status == "pruned":  # Optuna pruning: the lower bound found, as its last report
            trial.report(values[0], step=len(ev.points))
            raise optuna.TrialPruned(ev.reason)
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
            self.options.on_trial(TuneEvent(tier, "compare", 0, 1, current="AIConfigurator"))
        result = compare(self.sweep, tier, ours, label, self.folder / "peer" / tier, evaluator)
        doc = result.to_json()
        if best:
            doc["trial"] = best[0].number
        study.set_user_attr("peer", doc)
        if self.options.on_trial:
            self.options.on_trial(TuneEvent(tier, "compare", 1, 1, finished="compared"))

    # -- verification -------------------------------------------------------------------------

    def verify(self, tier: str) -> None:
        """Re-measure the best distinct feasible candidates live at their predicted load."""
        explored, _ = self._open(tier)
        study, _ = self._open(tier, verify=True)
        self._current = study
        recover_interrupted(study)
        sla = self.slas[tier]
        done = {t.user_attrs.get("verifies") for t in study.trials
                if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
                and not _was_interrupted(t)}  # an interrupted verification is measured again
        waiting = {t.user_attrs.get("verifies") for t in study.trials
                   if t.state == TrialState.WAITING}
        cands = candidates(explored, self.sweep.fidelity.verify_top)
        self._to_verify = len(cands)
        self._verified = sum(1 for c in cands if c.number in done)
        for cand in cands:
            if cand.number in done:
                continue
            if cand.number not in waiting:  # queued by a run stopped before it asked
                study.enqueue_trial(cand.params, user_attrs={"verifies": cand.number},
                                    skip_if_exists=False)
            trial = self._ask_for(study, cand)
            if _claimed_elsewhere(study, trial):
                study.tell(trial, state=TrialState.PRUNED)
                continue
            try:
                self._verify_one(study, trial, cand, tier, sla)
            except BaseException as e:
                if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    if isinstance(e, KeyboardInterrupt):
                        _mark_interrupted(trial, e)
                    study.tell(trial, state=TrialState.FAIL)
                raise
            self._verified += 1
        if self.options.on_trial:
            self.options.on_trial(TuneEvent(tier, "verify", self._verified, self._to_verify,
                                            finished="verified"))

    def _ask_for(self, study: optuna.Study, cand: optuna.trial.FrozenTrial) -> optuna.Trial:
        """A running verification trial of `cand`. `ask()` pops the oldest queued trial of the
        study, which may belong to another candidate (queued by a stopped run) or be a fresh
        sample (another tuner took the queued one): such a trial is pruned and `cand` queued
        again until its own trial comes up."""
        for _ in range(100):
            with warnings.catch_warnings():  # no heartbeat outside optimize(): the tuner id
                warnings.filterwarnings("ignore", message="Heartbeat of storage")  # recovers it
                trial = study.ask()
            if study._storage.get_trial(trial._trial_id).user_attrs.get("verifies") == \
                    cand.number:
                return trial
            study.tell(trial, state=TrialState.PRUNED)
            queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not any(t.user_attrs.get("verifies") == cand.number for t in queued):
                study.enqueue_trial(cand.params, user_attrs={"verifies": cand.number},
                                    skip_if_exists=False)
        raise DynamoBenchError(f"could not queue the verification of trial {cand.number}")

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
            self.options.on_trial(TuneEvent(tier, "verify", self._verified, self._to_verify,
                                            current=describe(knobs)))
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
        self.stopped: str | None = None  # why the budget stopped the study, once it has

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        sweep = self.tuner.sweep
        recover_interrupted(study)  # a tuner sharing the study may have died meanwhile
        trials = study.get_trials(deepcopy=False)
        done = _explored(study, trials)
        gpu_h = sum((t.user_attrs.get("evaluation") or {}).get("gpu_hours", 0.0)
                    for t in trials)
        stop = None
        if done >= self.tuner.trials:
            stop = f"trial budget ({self.tuner.trials} distinct evaluations)"
        elif self.tier in self.tuner._exhausted:
            stop = "every configuration of the space evaluated"
        elif sweep.budget.patience and since_improvement(trials) >= sweep.budget.patience:
            stop = f"patience: {sweep.budget.patience} trials without a better feasible value"
        elif sweep.budget.gpu_hours and gpu_h >= sweep.budget.gpu_hours:
            stop = f"GPU-hour budget ({sweep.budget.gpu_hours:g})"
        self.stopped = stop
        if self.tuner.options.on_trial:
            best, best_config = _best(trials)
            self.tuner.options.on_trial(TuneEvent(self.tier, "explore", done, self.tuner.trials,
                                                  best, best_config, finished=stop))
        if stop:
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
    """Finished trials that count against the budget: distinct evaluations. A re-proposal
    answered from its twin does not count, nor does an interrupted attempt (its re-queued copy
    does, once it finishes)."""
    trials = trials if trials is not None else study.get_trials(deepcopy=False)
    return sum(1 for t in trials if _counts(t))


def _local_turn(trials: list[optuna.trial.FrozenTrial], budget: int | None = None) -> bool:
    """Whether the trial after the one now running is a local move: every `LOCAL_EVERY`-th
    distinct evaluation, once no queued trial (start points, moves) is waiting, and not when
    the running one is the last of `budget` (a move queued then would be left waiting)."""
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    done = sum(1 for t in trials if _counts(t)) + 1  # the running trial included
    if budget is not None and done >= budget:
        return False
    return done % LOCAL_EVERY == 0


def _counts(t: optuna.trial.FrozenTrial) -> bool:
    if t.state == TrialState.PRUNED:  # cut short, or a verification another tuner took
        return "evaluation" in t.user_attrs and "duplicate_of" not in t.user_attrs
    return t.state in (TrialState.COMPLETE, TrialState.FAIL) and not _was_interrupted(t) \
        and "duplicate_of" not in t.user_attrs


def _mark_interrupted(trial: optuna.Trial, e: BaseException) -> None:
    storage = trial.study._storage
    storage.set_trial_user_attr(trial._trial_id, "reason", interrupted_reason(e))
    storage.set_trial_user_attr(trial._trial_id, "status", "failed")


def _was_interrupted(t: optuna.trial.FrozenTrial) -> bool:
    return str(t.user_attrs.get("reason", "")).startswith("interrupted")


def _read_study_file(folder: Path) -> dict[str, Any]:
    path = folder / STUDY_FILE
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        raise SpecError("", f"{path} is not a study file; give another --out (or delete "
                        f"{folder} to start over)")
    return doc


def _inside_folder(url: str, folder: Path) -> bool:
    """Whether `url` is a SQLite or journal file inside `folder`."""
    rec = recorded_url(url, folder)
    return rec.startswith(("journal:", "sqlite:")) and rec != url


def _differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The settings (dotted paths) in which two comparable sweeps differ, a few at most."""
    left, right = json.loads(_comparable(a)), json.loads(_comparable(b))
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{path}.{k}" if path else k)
        elif x != y:
            out.append(path or "sweep")

    walk(left, right, "")
    return ", ".join(out[:4]) + (f" and {len(out) - 4} more" if len(out) > 4 else "") + \
        " differ" if len(out) != 1 else f"{out[0]} differs"


def is_feasible(t: optuna.trial.FrozenTrial) -> bool:
    """A finished trial that found a load meeting its SLA (its constraints are all <= 0)."""
    return t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "complete"


def _best(trials: list[optuna.trial.FrozenTrial]) -> tuple[float | None, str]:
    """The best feasible value and the configuration of the trial that set it."""
    best = [t for t in trials if is_feasible(t) and t.values]
    if not best:
        return None, ""
    top = max(best, key=lambda t: (t.values[0], -t.number))
    return top.values[0], str(top.user_attrs.get("config", ""))


def since_improvement(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Distinct evaluations since the one that set the best feasible value (all, if none
    did)."""
    finished = sorted((t for t in trials if _counts(t)), key=lambda t: t.number)
    best, best_i = None, -1
    for i, t in enumerate(finished):
        if is_feasible(t) and t.values and (best is None or t.values[0] > best):
            best, best_i = t.values[0], i
    return len(finished) - 1 - best_i


def candidates(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The first `top` trials of `tune.ranking.rank_candidates`: feasible, best first
    objective first, one per distinct deployment."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    tier = str(study.user_attrs.get("tier", ""))
    ranked = rank_candidates(TrialRecord.from_trial(t, tier, "explore") for t in trials.values())
    return [trials[r.number] for r in ranked[:top]]


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


__all__ = ["Tuner", "TuneOptions", "Interrupted", "tune", "study_name", "knobs_from_params"]
