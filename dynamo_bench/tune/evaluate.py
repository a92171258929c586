"""Evaluators: one deployment + one SLA tier -> an `Evaluation` (the trial's whole record).

An evaluator runs the per-trial load search (bracket then bisect on concurrency) at one
fidelity: `ReplayEvaluator` in Dynamo's offline replay (milliseconds per probe), `LiveEvaluator`
on a real stack loaded by AIPerf. Whatever happens, `evaluate` returns: a deployment that does
not fit is `infeasible` with the memory verdict before anything runs; a launch failure, a worker
death, an AIPerf failure or a saturated load client is `failed` with the reason. Given the
incumbent (the tier's best value so far), a search is cut short as soon as the trial cannot beat
it: a probe that misses the SLA bounds from above what any lower load could give (throughput per
GPU grows with the load), so once that bound is below the incumbent the trial is `pruned`.
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dynamo_bench.errors import DynamoBenchError, UserError
from dynamo_bench.loadgen.search import Probe, SearchOutcome, search_down, search_max_load
from dynamo_bench.perf.timing import DoesNotFitError, boundary_estimate
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.specs.workload import WorkloadSpec
from dynamo_bench.tune.cut import cannot_beat, cut_reason
from dynamo_bench.tune.probes import ProbeStore
from dynamo_bench.tune.sweep import LoadSearch

Status = Literal["complete", "infeasible", "failed", "pruned"]
Fidelity = Literal["replay", "live"]

#: Metrics kept for every probe in the study storage (the rest stay in the run folders).
POINT_FIELDS = (
    "concurrency", "request_rate", "gpus", "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99",
    "ttft_ms_mean", "itl_ms_p50", "itl_ms_p90", "itl_ms_p99", "itl_ms_mean", "e2e_ms_p50",
    "e2e_ms_p90", "output_tok_s", "output_tok_s_per_gpu", "output_tok_s_per_user", "request_s",
    "goodput_request_s", "requests", "errors", "error_rate", "prefix_cache_hit_rate",
    "client_saturated", "saturation_reason", "time_base", "source", "duration_s")



@dataclass
class Evaluation:
    """What one trial found. `points` are the probes in the order they ran (dicts of
    `POINT_FIELDS` plus `load`, `feasible`, `usable`); `best` is the feasible probe with the
    highest output throughput per GPU."""

    status: Status
    fidelity: Fidelity
    reason: str | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    limited_by: str | None = None
    elapsed_s: float = 0.0
    gpu_hours: float = 0.0
    memory_shortfall: float = 0.0

    def to_attrs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Evaluation:
        return cls(**{k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs})


def point_row(load: float, metrics: Metrics, sla: SLA) -> dict[str, Any]:
    row = {k: getattr(metrics, k) for k in POINT_FIELDS}
    row.update(load=load, feasible=bool(sla.feasible(metrics)), usable=bool(metrics.usable))
    return row


def sla_reason(sla: SLA, metrics: Metrics, load: float, lowest: bool = True) -> str:
    """`misses the SLA even at concurrency 1: ttft_ms_p90 412 > 300`."""
    bad = [f"{c.key} {c.value(metrics):.4g} > {c.threshold:g}" if c.op == "<=" else
           f"{c.key} {c.value(metrics):.4g} < {c.threshold:g}" for c in sla.violated(metrics)]
    where = "even at" if lowest else "at"
    return f"misses the SLA {where} concurrency {load:g}: " + ", ".join(bad)


def _from_outcome(outcome: SearchOutcome[Metrics], sla: SLA, fidelity: Fidelity,
                  incumbent: float | None = None) -> Evaluation:
    points = [point_row(p.load, p.result, sla) for p in outcome.probes]
    if outcome.limited_by == "cut":
        assert outcome.above is not None and incumbent is not None
        i = outcome.probes.index(outcome.above)
        best = None if outcome.best is None else points[outcome.probes.index(outcome.best)]
        return Evaluation("pruned", fidelity, reason=cut_reason(points[i], incumbent),
                          points=points, best=best, limited_by="cut")
    feasible = [pt for pt in points if pt["feasible"] and pt["usable"]]
    best = max(feasible, key=lambda pt: pt["output_tok_s_per_gpu"] or 0.0, default=None)
    ev = Evaluation("complete", fidelity, points=points, best=best,
                    limited_by=outcome.limited_by)
    if best is None:
        last = outcome.probes[-1] if outcome.probes else None
        if last is None:
            ev.status, ev.reason = "failed", "no probe ran"
        elif not last.usable:
            ev.status = "failed"
            why = last.result.saturation_reason or (
                f"{last.result.errors} of {last.result.requests} requests failed")
            ev.reason = f"unusable measurement at concurrency {last.load:g}: {why}"
        else:
            lowest = min(outcome.probes, key=lambda p: p.load)
            ev.status = "infeasible"
            ev.reason = sla_reason(sla, lowest.result, lowest.load,
                                   lowest=outcome.limited_by == "infeasible")
    return ev


class Evaluator(abc.ABC):
    """Measures one deployment under one SLA tier at one fidelity.

    Subclasses provide `session`: a context manager in which the deployment is up and a
    function measures it at a concurrency. The searches are shared. Contract: `evaluate` and
    `verify` never raise for anything the deployment itself causes (no fit, crash, timeout,
    failed requests, a saturated client); they return an `Evaluation` whose status and reason
    say what happened. They raise only for errors outside the trial (bad input, Ctrl-C).
    """

    fidelity: Fidelity

    def __init__(self, workload: WorkloadSpec, load: LoadSearch) -> None:
        self.workload = workload
        self.load = load

    def workload_at(self, concurrency: int, index: int = 0) -> WorkloadSpec:
        """The workload at `concurrency`, with `requests_per_slot` requests per slot and a seed
        of its own per probe (the same prompts again would hit the prefix cache)."""
        w = self.workload.at(concurrency=concurrency)
        count = w.effective_request_count
        update: dict[str, Any] = {"seed": self.workload.seed + index}
        if count is not None:
            update["request_count"] = max(count, math.ceil(self.load.requests_per_slot *
                                                           concurrency))
        return w.model_copy(update=update)

    @abc.abstractmethod
    def session(self, spec: DeploymentSpec, sla: SLA, out_dir: Path
                ) -> contextlib.AbstractContextManager[Callable[[int], Metrics]]:
        """Bring the deployment up; yield `measure(concurrency) -> Metrics`."""

    def first_guess(self, spec: DeploymentSpec, sla: SLA) -> int:
        """Where the load search starts: the performance model's estimate of the SLA boundary
        (perf/timing.py: `boundary_estimate`), within [load.start, load.limit]."""
        w = self.workload
        limits = {m: min((c.threshold for c in sla.constraints
                          if c.metric == m and c.op == "<="), default=float("inf"))
                  for m in ("ttft_ms", "itl_ms")}
        guess = None
        if w.prompt_tokens is not None and w.osl is not None:
            try:
                guess = boundary_estimate(spec, w.prompt_tokens, w.osl.mean,
                                          ttft_ms=limits["ttft_ms"],
                                          itl_ms=limits["itl_ms"], limit=self.load.limit)
            except DoesNotFitError:
                guess = None
        return max(self.load.start, min(self.load.limit, guess or self.load.start))

    def estimates(self, specs: list[DeploymentSpec], sla: SLA) -> list[float] | None:
        """A cheap estimate of each deployment's value (output tok/s per GPU) for ranking
        start points, or None when this fidelity has none cheaper than `evaluate` (live)."""
        return None

    def evaluate(self, spec: DeploymentSpec, sla: SLA, out_dir: Path,
                 incumbent: float | None = None) -> Evaluation:
        """Search the highest concurrency meeting `sla`, from the model's first guess (in
        steps from `load.first_step` of it). Given `incumbent` (a value to beat, output
        tok/s per GPU), stop as soon as a probe shows the trial cannot beat it (`cannot_beat`):
        the evaluation is then `pruned`, its best (if any) a lower bound."""
        start = self.first_guess(spec, sla)
        give_up = None if incumbent is None else (
            lambda p: cannot_beat(p.result.output_tok_s_per_gpu, incumbent))
        return self._search(spec, sla, out_dir, lambda probe: search_max_load(
            probe, start=start, limit=self.load.limit, low=self.load.start,
            first_step=self.load.first_step, give_up=give_up), incumbent)

    def verify(self, spec: DeploymentSpec, sla: SLA, concurrency: int,
               out_dir: Path) -> Evaluation:
        """Check a predicted load: measure it; if it misses `sla`, walk down to one that holds."""
        return self._search(spec, sla, out_dir, lambda probe: search_down(
            probe, high=concurrency, low=self.load.start, max_probes=self.load.verify_probes))

    def _search(self, spec: DeploymentSpec, sla: SLA, out_dir: Path,
                strategy: Callable[[Callable[[float], Probe[Metrics]]], SearchOutcome[Metrics]],
                incumbent: float | None = None) -> Evaluation:
        t0 = time.perf_counter()
        try:
            with self.session(spec, sla, out_dir) as measure:
                ev = _from_outcome(strategy(_prober(measure, sla)), sla, self.fidelity,
                                   incumbent)
        except DoesNotFitError as e:
            ev = _no_fit(e, self.fidelity)
        except UserError:  # not the deployment's fault (missing GPUs, bad model path)
            raise
        except DynamoBenchError as e:  # launch failure, dead worker, AIPerf failure
            ev = Evaluation("failed", self.fidelity, reason=str(e).splitlines()[0])
        ev.elapsed_s = time.perf_counter() - t0
        if self.fidelity == "live" and spec.backend != "mocker":
            ev.gpu_hours = spec.gpus * ev.elapsed_s / 3600.0
        return ev


class ReplayEvaluator(Evaluator):
    """Dynamo's offline replay, repeatable.

    A probe of a deployment whose KV router picks among equal workers at random is replayed
    `load.replay_repeats` times when it lands within 5% of an SLA limit, and the median run by
    SLA slack is kept, so that the same configuration scores the same again (the replay has no
    seed for the router's tie-breaking). Probes are cached by (deployment, concurrency):
    SLA tiers and repeated configurations reuse them. Repeats run in two threads (the replay's
    core releases the GIL).
    """

    fidelity: Fidelity = "replay"

    def __init__(self, workload: WorkloadSpec, load: LoadSearch,
                 store: ProbeStore | None | Literal["default"] = "default") -> None:
        """`store`: where probes are kept across runs (tune/probes.py); the default is the
        cache root's, None keeps them in this evaluator only (to measure the replay's own
        variation)."""
        super().__init__(workload, load)
        self._cache: dict[tuple[str, int], list[Metrics]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._store_setting = store
        self._opened: ProbeStore | None = None

    @property
    def _store(self) -> ProbeStore | None:
        """The probe store, opened on the first probe (a refused study writes nothing)."""
        if self._store_setting != "default":
            return self._store_setting
        if self._opened is None:
            self._opened = ProbeStore()
        return self._opened

    def _runs(self, spec: DeploymentSpec, key: str, w: WorkloadSpec, n: int) -> list[Metrics]:
        """At least `n` replays of `w` on `spec` (cached; the missing ones run in parallel)."""
        from dynamo_bench.replay import replay

        runs = self._cache.setdefault((key, w.concurrency or 0), [])
        missing = n - len(runs)
        if missing == 1:
            runs.append(replay(spec, w)[0])
        elif missing > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="replay")
            runs += list(self._pool.map(lambda _: replay(spec, w)[0], range(missing)))
        return runs

    def measurer(self, spec: DeploymentSpec, sla: SLA) -> Callable[[int], Metrics]:
        """`measure(concurrency) -> Metrics` on `spec`, repeated near `sla`'s limits."""
        key = spec.model_dump_json(exclude={"name"})
        random_ties = _random_ties(spec)

        def measure(concurrency: int) -> Metrics:
            w = self.workload_at(concurrency)
            # a stored answer is keyed by the limits it was repeated near (None: not repeated)
            stored = ProbeStore.key(key, w.model_dump(mode="json"), None)
            near = ProbeStore.key(key, w.model_dump(mode="json"), str(sla))
            store = self._store
            if store is not None:
                for k in (near, stored):
                    found = store.get(k)
                    if found is not None and (k == near or not (
                            random_ties and _near_limit(sla, found))):
                        return found
            runs = self._runs(spec, key, w, 1)
            out, k = runs[0], stored
            if random_ties and self.load.replay_repeats > 1 and _near_limit(sla, runs[0]):
                runs = self._runs(spec, key, w, self.load.replay_repeats)
                out, k = median_run(sla, runs[:self.load.replay_repeats]), near
            if store is not None:
                store.put(k, out)
            return out

        return measure

    @contextlib.contextmanager
    def session(self, spec: DeploymentSpec, sla: SLA, out_dir: Path
                ) -> Iterator[Callable[[int], Metrics]]:
        yield self.measurer(spec, sla)

    def estimates(self, specs: list[DeploymentSpec], sla: SLA) -> list[float]:
        """One replay per deployment at the model's guess of its SLA boundary (the probe its
        evaluation starts with, so it is reused): the throughput per GPU there, divided by
        1 + the worst SLA overshoot when the SLA is missed; 0 when it does not fit. Two at a
        time."""
        def one(spec: DeploymentSpec) -> float:
            try:
                m = self.measurer(spec, sla)(self.first_guess(spec, sla))
            except DoesNotFitError:
                return 0.0
            value = float(m.output_tok_s_per_gpu or 0.0)
            worst = max(sla.slack(m), default=0.0)
            if not m.usable or not math.isfinite(worst):
                return 0.0
            return value if worst <= 0 else value / (1.0 + worst)

        # a pool of its own: a probe's repeats use `_pool`, and must not wait behind these
        with ThreadPoolExecutor(2, thread_name_prefix="estimate") as pool:
            return list(pool.map(one, specs))


def _prober(measure: Callable[[int], Metrics], sla: SLA) -> Callable[[float], Probe[Metrics]]:
    def probe(x: float) -> Probe[Metrics]:
        m = measure(int(x))
        return Probe(x, sla.feasible(m), m.usable, m)

    return probe


def _random_ties(spec: DeploymentSpec) -> bool:
    """Whether the replay's KV router may pick among equal workers at random (more than one
    worker behind a KV-routed role)."""
    return spec.router.mode == "kv" and any(g.replicas > 1 for g in spec.workers.values())


def _near_limit(sla: SLA, m: Metrics, margin: float = 0.05) -> bool:
    """Whether a constrained metric of `m` lies within `margin` of its limit."""
    for c in sla.constraints:
        v = c.value(m)
        if v is not None and c.threshold and abs(v / c.threshold - 1.0) < margin:
            return True
    return False


def median_run(sla: SLA, runs: list[Metrics]) -> Metrics:
    """The run with the median worst SLA slack (an odd count: the majority decides
    feasibility)."""
    ranked = sorted(runs, key=lambda m: max(sla.slack(m), default=0.0))
    return ranked[(len(ranked) - 1) // 2]


def _no_fit(e: DoesNotFitError, fidelity: Fidelity) -> Evaluation:
    fit = e.fit
    need = fit.weights_gib + fit.reserve_gib
    shortfall = max(need / fit.usable_gib - 1.0, 0.0) if fit.usable_gib > 0 else 1.0
    return Evaluation("infeasible", fidelity, reason=f"does not fit: {e}",
                      memory_shortfall=shortfall or 1e-3)


class LiveEvaluator(Evaluator):
    """A real stack (the deployment's backend) loaded by real AIPerf; one stack per search.

    Run folders (AIPerf artifacts, every process log) are kept under `out_dir`. A worker that
    dies fails the trial with its name and exit status. GPU-hours are counted for GPU backends.
    """

    fidelity: Fidelity = "live"

    @contextlib.contextmanager
    def session(self, spec: DeploymentSpec, sla: SLA, out_dir: Path
                ) -> Iterator[Callable[[int], Metrics]]:
        from dynamo_bench.loadgen.bench import measure as run_point
        from dynamo_bench.loadgen.bench import run_folder_name, target_for
        from dynamo_bench.serving.stack import Stack

        with Stack(spec, run_dir=out_dir / "stack") as stack:
            target = target_for(stack)
            index = 0

            def measure(concurrency: int) -> Metrics:
                nonlocal index
                w = self.workload_at(concurrency, index)
                index += 1
                try:
                    point = run_point(target, w, out_dir / run_folder_name(w), sla=sla,
                                      deployment=spec)
                except DynamoBenchError:
                    stack.ensure_alive()  # a dead worker is the better explanation
                    raise
                stack.ensure_alive()
                return point.metrics

            yield measure
