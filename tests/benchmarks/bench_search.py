"""How well the tuner's search finds the best deployment, on problems with a known answer.

    python tests/benchmarks/bench_search.py [--problems chat-qwen3-8b-h100,...] [--seeds 5]
                                            [--quick] [--no-peer]

Problems are the sweep files of sweeps/bench/ (lists only, so every space is finite): the
sampler problem of sweeps/bench/samplers.yaml and our own, dense and MoE, short and long context,
with and without prefix reuse, favouring aggregated or disaggregated serving, and a two-tier
version of the AIConfigurator peer problem with 32,400 configurations.

1. Ground truth, per problem and SLA tier, from the tuner's own evaluator
   (`ReplayEvaluator(sweep.workload, sweep.load).evaluate(spec, sla, out_dir)`, one evaluator
   per process, shared by the tiers so they reuse each other's probes, two processes): every
   configuration of a space under 5,000 configurations; for a larger space, a seeded random
   sample (2,000) plus a local search from the best few and the best of each mode (one
   parameter changed at a time, until no neighbour is better). Cached in
   $DYNAMO_BENCH_CACHE/bench-search/, keyed by the sweep and a digest of the source files that
   decide a score (a changed evaluator recomputes it).
2. Samplers, per problem, tier and seed, through the real `Tuner(...).explore(tier)` with
   `TuneOptions(verify=False, peer=False)` and an evaluator that looks configurations up in the
   ground truth (a configuration the sample lacks is evaluated for real and added to it):
   `tpe` (the sweep exactly as written: TPE and the performance model's start points), `random`
   (`search.sampler: random`, no start points) and `grid` (every configuration once, in a
   seeded shuffled order, enqueued). Each runs twice: to the sweep's own budget (`budget.trials`
   and `budget.patience`: the default budget) and, for the curves, to a fixed number of
   evaluations (10% of the space or the default budget's trials if that is more, at most
   2,000).
3. Printed per problem, tier and sampler (median over seeds; per seed where it matters): the
   mode of the true best (agg or disagg, next to the best of the other mode); evaluations to
   reach 99% of the best, as a share of the space (every evaluation the tuner ran counts: start
   points, failed and infeasible ones); the value reached, as a fraction of the best, after 2%,
   5% and 10% of the space; for the default budget how many seeds reached 99%, its finished
   trials, distinct evaluations and duplicates (trials that reused an earlier evaluation of the
   same configuration); how often the first start point is within 5% of the best; load searches
   that ended on their probe budget; the sampler's own wall time per run (lookups only).
4. The peer check: a full two-tier default study of the Llama-3.1-70B 8 x H100 problem
   (`Tuner.run`, real replay, no verification, no side by side) timed against AIConfigurator's
   own search of the same questions (`cli_default`, one per tier), one after the other in this
   process, and the two picks scored by the study's evaluator.
5. Floors, as a PASS/FAIL table: (a) the default study reaches 99% of the best on every problem,
   tier and seed within its default budget; (b) the default study's median evaluations to 99%
   are at most 3% of every space under 2,000 configurations; (c) the peer study takes no more
   wall time than AIConfigurator's search and its pick is at least as good. The exit status is 0
   either way; the last line says how many floors passed.

`--quick` is a smoke run: two seeds, short runs (8 trials, 10 evaluations per curve), and the
ground truth from small samples unless the full one is cached; its numbers are not the
benchmark's. Set DYN_LOG to see the replay's own log (default: errors only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dynamo_bench.cache import cache_root
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.cut import CUT_MARGIN, cut_short
from dynamo_bench.tune.evaluate import Evaluation, Evaluator, ReplayEvaluator
from dynamo_bench.tune.probes import ProbeStore
from dynamo_bench.tune.space import deployment_for, describe, enumerate_params, knobs_from_params
from dynamo_bench.tune.storage import open_storage, storage_url
from dynamo_bench.tune.sweep import SweepSpec
from dynamo_bench.tune.sweep_file import load_sweep
from dynamo_bench.tune.tuner import TuneOptions, Tuner, candidates, study_name

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "sweeps" / "bench"
#: The problems, in the order they are printed, and what each is meant to favour.
PROBLEMS: dict[str, str] = {
    "samplers": "RAG traffic over 16 shared prefixes (the sampler benchmark's problem)",
    "chat-qwen3-8b-h100": "dense, short context; agg should win",
    "summarize-moe-h200": "MoE, long context; disagg should win",
    "agentic-qwen3-32b-h200": "dense, multi-turn prefix reuse; disagg should win",
    "peer-llama70b-h100": "dense, long input, the peer problem with two tiers (large)",
}
INTENDED = {"chat-qwen3-8b-h100": "agg", "summarize-moe-h200": "disagg",
            "agentic-qwen3-32b-h200": "disagg"}
PEER = "peer-llama70b-h100"
#: Source files whose change changes a score: the ground truth is recomputed when they change.
SCORE_SOURCES = ("dynamo_bench/tune/evaluate.py", "dynamo_bench/replay.py",
                 "dynamo_bench/loadgen/search.py", "dynamo_bench/loadgen/steady.py",
                 "dynamo_bench/perf/*.py", "dynamo_bench/perf/data/*")
#: ... and those that decide which deployment a configuration is (the enumeration cache).
SPACE_SOURCES = ("dynamo_bench/tune/space.py", "dynamo_bench/tune/sweep.py",
                 "dynamo_bench/specs/*.py")
EXHAUSTIVE_BELOW = 5_000
WORKERS = 2
SAMPLERS = ("tpe", "random", "grid")
MARKS = (0.02, 0.05, 0.10)
OBJECTIVE = "output_tok_s_per_gpu"
#: trial states that ended with an answer (pruned: cut short, `search.cut_short`)
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


@dataclass(frozen=True)
class Settings:
    seeds: int
    quick: bool
    sample: int  # configurations sampled for a large space's ground truth (all spaces: quick)
    local_starts: int  # best configurations a local search starts from, per tier
    local_rounds: int | None  # most moves of a local search (None: until no neighbour is better)
    curve_share: float = 0.10
    curve_max: int = 2000
    trials_cap: int | None = None  # quick: fewer trials than the sweep's budget


FULL = Settings(seeds=5, quick=False, sample=2000, local_starts=3, local_rounds=None)
QUICK = Settings(seeds=2, quick=True, sample=24, local_starts=0, local_rounds=0, curve_max=10,
                 trials_cap=8)


def _digest(patterns: Iterable[str]) -> str:
    h = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                h.update(path.relative_to(REPO).as_posix().encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _spec_digest(spec: DeploymentSpec) -> str:
    return hashlib.sha256(spec.model_dump_json(exclude={"name"}).encode()).hexdigest()[:20]


def _cache_dir() -> Path:
    path = cache_root() / "bench-search"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # another run may be writing the same file
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)


def value_of(attrs: dict[str, Any] | None) -> float:
    """The objective of one evaluation: output tok/s per GPU at its best feasible load, else 0."""
    if not attrs or attrs.get("status") != "complete":
        return 0.0
    return float((attrs.get("best") or {}).get(OBJECTIVE) or 0.0)


# -- problems and their spaces -------------------------------------------------------------

@dataclass
class Problem:
    """One sweep file and its enumerated space."""

    name: str
    path: Path
    sweep: SweepSpec
    keys: list[str]  # every configuration's Optuna params (json, sorted keys), in enum order
    spec_of: dict[str, str]  # params key -> deployment digest
    by_spec: dict[str, list[str]] = field(default_factory=dict)  # digest -> params keys

    def __post_init__(self) -> None:
        for k, d in self.spec_of.items():
            self.by_spec.setdefault(d, []).append(k)

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def tiers(self) -> list[str]:
        return list(self.sweep.slas())

    def params(self, key: str) -> dict[str, Any]:
        return json.loads(key)

    def spec(self, key: str) -> DeploymentSpec:
        return deployment_for(self.sweep, knobs_from_params(self.sweep, self.params(key)))

    def label(self, key: str) -> str:
        return describe(knobs_from_params(self.sweep, self.params(key)))


def load_problem(name: str) -> Problem:
    """The problem `name` (a file of sweeps/bench/), its space enumerated once and cached."""
    path = BENCH / f"{name}.yaml"
    sweep = load_sweep(path)
    tag = hashlib.sha256((sweep.model_dump_json() + _digest(SPACE_SOURCES)).encode()
                         ).hexdigest()[:16]
    cache = _cache_dir() / f"space-{sweep.name}-{tag}.json"
    if cache.exists():
        doc = json.loads(cache.read_text())
    else:
        t0 = time.perf_counter()
        keys = [_key(p) for p in enumerate_params(sweep)]
        spec_of = {k: _spec_digest(deployment_for(sweep, knobs_from_params(sweep, json.loads(k))))
                   for k in keys}
        doc = {"keys": keys, "spec_of": spec_of}
        _write_json(cache, doc)
        print(f"  {name}: enumerated {len(keys)} configurations in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return Problem(name, path, sweep, doc["keys"], doc["spec_of"])


# -- evaluating configurations for real, on both cores --------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(path: str) -> None:
    os.environ.setdefault("DYN_LOG", "error")
    sweep = load_sweep(path)
    _WORKER.update(sweep=sweep, evaluator=ReplayEvaluator(sweep.workload, sweep.load),
                   slas=sweep.slas())


def _evaluate_all_tiers(sweep: SweepSpec, evaluator: ReplayEvaluator, slas: dict[str, SLA],
                        key: str) -> dict[str, dict[str, Any]]:
    spec = deployment_for(sweep, knobs_from_params(sweep, json.loads(key)))
    out = Path(tempfile.gettempdir())  # the replay writes nothing there
    return {tier: evaluator.evaluate(spec, sla, out).to_attrs() for tier, sla in slas.items()}


def _evaluate_chunk(keys: list[str]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    w = _WORKER
    return [(k, _evaluate_all_tiers(w["sweep"], w["evaluator"], w["slas"], k)) for k in keys]


def evaluate_many(problem: Problem, keys: list[str], what: str) -> dict[str, dict[str, Any]]:
    """params key -> {tier: Evaluation attrs}, evaluated in two processes (one evaluator each)."""
    if not keys:
        return {}
    chunk = max(1, min(25, math.ceil(len(keys) / (WORKERS * 8))))
    chunks = [keys[i:i + chunk] for i in range(0, len(keys), chunk)]
    out: dict[str, dict[str, Any]] = {}
    t0 = last = time.perf_counter()
    with ProcessPoolExecutor(WORKERS, initializer=_worker_init,
                             initargs=(str(problem.path),)) as pool:
        for fut in as_completed([pool.submit(_evaluate_chunk, c) for c in chunks]):
            out.update(fut.result())
            now = time.perf_counter()
            if now - last > 30 or len(out) == len(keys):
                last = now
                print(f"  {problem.name}: {what}: {len(out)}/{len(keys)} configurations, "
                      f"{now - t0:.0f} s", flush=True)
    return out


# -- ground truth ---------------------------------------------------------------------------

@dataclass
class Truth:
    """Evaluation attrs per tier and configuration; `path` is where they are cached."""

    path: Path
    method: str
    by_tier: dict[str, dict[str, dict[str, Any]]]
    meta: dict[str, Any]
    dirty: bool = False  # holds evaluations the file lacks
    cached: bool = False  # read complete from the cache (not computed by this run)

    def add(self, problem: Problem, found: dict[str, dict[str, Any]]) -> int:
        """Add evaluations (params key -> {tier: attrs}); every params key of the same
        deployment gets them. Returns how many configurations were new."""
        new = 0
        for key, tiers in found.items():
            for k in problem.by_spec.get(problem.spec_of.get(key, ""), [key]):
                new += any(k not in self.by_tier[tier] for tier in tiers)
                for tier, attrs in tiers.items():
                    self.by_tier[tier].setdefault(k, attrs)
        self.dirty = self.dirty or new > 0
        return new

    def best(self, tier: str, mode: str | None = None) -> tuple[float, str | None]:
        top, arg = 0.0, None
        for k, attrs in self.by_tier[tier].items():
            v = value_of(attrs)
            if v > top and (mode is None or json.loads(k).get("mode", mode) == mode):
                top, arg = v, k
        return top, arg

    def save(self, problem: Problem) -> None:
        _write_json(self.path, {"sweep": problem.sweep.model_dump(mode="json"),
                                "method": self.method, "meta": self.meta,
                                "truth": self.by_tier})
        self.dirty = False


def truth_path(problem: Problem, method: str) -> Path:
    key = problem.sweep.model_dump_json() + "\n" + _digest(SCORE_SOURCES) + "\n" + method
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _cache_dir() / f"truth-{problem.sweep.name}-{method}-{tag}.json"


def read_truth(problem: Problem, method: str) -> Truth | None:
    path = truth_path(problem, method)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return Truth(path, method, doc["truth"], doc.get("meta", {}))


def truth_method(problem: Problem, s: Settings) -> str:
    if problem.size < EXHAUSTIVE_BELOW and not s.quick:
        return "exhaustive"
    rounds = "all" if s.local_rounds is None else s.local_rounds
    return f"sample{s.sample}-local{s.local_starts}x{rounds}"


def ground_truth(problem: Problem, s: Settings) -> Truth:
    """Exhaustive under EXHAUSTIVE_BELOW configurations; else (and for --quick, unless the
    full ground truth is cached) the best of a seeded random sample plus a local search from
    the best few (cached either way)."""
    method = truth_method(problem, s)
    exhaustive = method == "exhaustive"
    if s.quick:
        full = read_truth(problem, truth_method(problem, FULL))
        if full is not None and full.meta.get("complete"):
            full.cached = True
            return full
    cached = read_truth(problem, method)
    if cached is not None and cached.meta.get("complete"):
        cached.cached = True
        return cached
    truth = cached or Truth(truth_path(problem, method), method,
                            {t: {} for t in problem.tiers}, {})
    t0 = time.perf_counter()
    if exhaustive:
        todo = [k for k in problem.keys if k not in truth.by_tier[problem.tiers[0]]]
        truth.add(problem, evaluate_many(problem, todo, "every configuration"))
        truth.meta.update(evaluated=problem.size)
    else:
        rng = random.Random(20_240_601)
        sample = rng.sample(problem.keys, min(s.sample, problem.size))
        todo = [k for k in sample if k not in truth.by_tier[problem.tiers[0]]]
        truth.add(problem, evaluate_many(problem, todo, "random sample"))
        truth.save(problem)
        sampled = {t: truth.best(t)[0] for t in problem.tiers}
        moves = local_search(problem, truth, s)
        truth.meta.update(sample=len(sample), sample_best=sampled, local_moves=moves,
                          evaluated=len(truth.by_tier[problem.tiers[0]]))
    truth.meta.update(complete=True, seconds=round(time.perf_counter() - t0, 1))
    truth.save(problem)
    return truth


def _neighbours(problem: Problem) -> Callable[[str], list[str]]:
    """Configurations that differ from one in exactly one parameter (same parameter names)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for k in problem.keys:
        p = json.loads(k)
        for name in p:
            rest = {n: v for n, v in p.items() if n != name}
            groups.setdefault((name, _key(rest)), []).append(k)

    def around(key: str) -> list[str]:
        p = json.loads(key)
        out: list[str] = []
        for name in p:
            rest = {n: v for n, v in p.items() if n != name}
            out += [k for k in groups.get((name, _key(rest)), []) if k != key]
        return out

    return around


def local_search(problem: Problem, truth: Truth, s: Settings) -> dict[str, int]:
    """Steepest ascent from each tier's best `local_starts` configurations and the best of
    each mode (a neighbour never changes the mode): evaluate every neighbour, move to the best
    if it is better, until none is (or `local_rounds` moves). The tiers climb together, so each
    round's new neighbours are evaluated in one batch."""
    around = _neighbours(problem)
    climbers: list[tuple[str, str]] = []  # (tier, current key)
    for tier in problem.tiers if s.local_starts else []:
        ranked = sorted(truth.by_tier[tier], key=lambda k: -value_of(truth.by_tier[tier][k]))
        starts = ranked[:s.local_starts] + [truth.best(tier, m)[1] for m in ("agg", "disagg")]
        for k in dict.fromkeys(starts):
            if k is not None and value_of(truth.by_tier[tier][k]) > 0:
                climbers.append((tier, k))
    moves = {t: 0 for t in problem.tiers}
    done: set[tuple[str, str]] = set()
    rounds = 0
    while climbers and (s.local_rounds is None or rounds < s.local_rounds):
        rounds += 1
        need = sorted({n for _, k in climbers for n in around(k)
                       if n not in truth.by_tier[problem.tiers[0]]})
        truth.add(problem, evaluate_many(problem, need, f"local search round {rounds}"))
        truth.save(problem)
        nxt = []
        for tier, k in climbers:
            best = max(around(k), key=lambda n: value_of(truth.by_tier[tier].get(n)),
                       default=k)
            if value_of(truth.by_tier[tier].get(best)) > value_of(truth.by_tier[tier][k]) \
                    and (tier, best) not in done:
                moves[tier] += 1
                done.add((tier, best))
                nxt.append((tier, best))
        climbers = nxt
    return moves


# -- the lookup evaluator and one sampler run ----------------------------------------------

class _Enough(Exception):
    """Raised by the lookup once a run has had its fixed number of evaluations."""


class LookupEvaluator(Evaluator):
    """Answers from the ground truth; a configuration it lacks is evaluated for real (every
    tier at once) and kept in `found`. Records every evaluation the tuner asks for."""

    fidelity = "replay"

    def __init__(self, problem: Problem, truth: dict[str, dict[str, dict[str, Any]]],
                 tier: str, limit: int | None) -> None:
        super().__init__(problem.sweep.workload, problem.sweep.load)
        self.problem, self.truth, self.tier, self.limit = problem, truth, tier, limit
        self.seen: list[str] = []  # params keys, one per evaluation, in order
        self.found: dict[str, dict[str, dict[str, Any]]] = {}
        self.real_s = 0.0
        self._real: ReplayEvaluator | None = None

    def session(self, spec: DeploymentSpec, sla: SLA, out_dir: Path
                ) -> contextlib.AbstractContextManager[Callable[[int], Metrics]]:
        raise NotImplementedError  # evaluate() is overridden: nothing to measure

    def estimates(self, specs: list[DeploymentSpec], sla: SLA) -> list[float]:
        """The real replay evaluator's estimates: start points are ranked as the tuner ranks
        them (one replay each, kept in the probe store)."""
        if self._real is None:
            self._real = ReplayEvaluator(self.problem.sweep.workload, self.problem.sweep.load)
        return self._real.estimates(specs, sla)

    def evaluate(self, spec: DeploymentSpec, sla: SLA, out_dir: Path,
                 incumbent: float | None = None) -> Evaluation:
        """The ground truth's full evaluation, cut short as the replay evaluator would have
        cut it given `incumbent` (`cut_short`: the search is deterministic given its probes)."""
        return cut_short(self._full(spec), incumbent)

    def _full(self, spec: DeploymentSpec) -> Evaluation:
        if self.limit is not None and len(self.seen) >= self.limit:
            raise _Enough
        keys = self.problem.by_spec[_spec_digest(spec)]
        key = next((k for k in keys if k in self.truth[self.tier]), keys[0])
        self.seen.append(key)
        attrs = self.truth[self.tier].get(key)
        if attrs is None:
            t0 = time.perf_counter()
            if self._real is None:
                self._real = ReplayEvaluator(self.problem.sweep.workload, self.problem.sweep.load)
            found = _evaluate_all_tiers(self.problem.sweep, self._real,
                                        self.problem.sweep.slas(), key)
            for k in keys:
                self.found[k] = found
                for tier, a in found.items():
                    self.truth[tier].setdefault(k, a)
            attrs = found[self.tier]
            self.real_s += time.perf_counter() - t0
        return Evaluation.from_attrs(attrs)


@dataclass(frozen=True)
class Job:
    problem: str
    tier: str
    sampler: str
    seed: int
    kind: str  # "default" (the sweep's budget) or "curve" (a fixed number of evaluations)
    limit: int | None  # evaluations (curve)
    trials: int | None  # TuneOptions.trials (None: the sweep's budget)
    truth_file: str
    cut_short: bool | None = None  # search.cut_short (None: as the sweep says)


def _variant(sweep: SweepSpec, sampler: str, seed: int, kind: str,
             cut_short: bool | None = None) -> SweepSpec:
    search = sweep.search.model_copy(update={"seed": sweep.search.seed + seed})
    if cut_short is not None:
        search = search.model_copy(update={"cut_short": cut_short})
    if sampler != "tpe":
        search = search.model_copy(update={"sampler": "random", "start_points": 0})
    budget = sweep.budget if kind == "default" else \
        sweep.budget.model_copy(update={"patience": None})
    return sweep.model_copy(update={"search": search, "budget": budget})


_LOADED: dict[str, tuple[Problem, dict[str, dict[str, dict[str, Any]]]]] = {}


def run_job(job: Job) -> dict[str, Any]:
    """One sampler run through the real Tuner; returns what it evaluated and how."""
    os.environ.setdefault("DYN_LOG", "error")
    if job.truth_file not in _LOADED:
        problem = load_problem(job.problem)
        _LOADED[job.truth_file] = (problem, json.loads(Path(job.truth_file).read_text())["truth"])
    problem, truth = _LOADED[job.truth_file]
    sweep = _variant(problem.sweep, job.sampler, job.seed, job.kind, job.cut_short)
    lookup = LookupEvaluator(problem, truth, job.tier, job.limit)
    # the journal syncs every write to disk: in memory (tmpfs) that costs the sampler nothing
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        folder = Path(tmp) / "study"
        folder.mkdir()
        tuner = Tuner(sweep, folder, storage="journal",
                      options=TuneOptions(verify=False, peer=False, explore_evaluator=lookup,
                                          trials=job.trials))
        if job.sampler == "grid":
            order = list(problem.keys)
            random.Random(job.seed).shuffle(order)
            want = job.limit if job.limit is not None else (job.trials or sweep.budget.trials)
            storage = open_storage(storage_url("journal", folder))
            study = optuna.create_study(storage=storage,
                                        study_name=study_name(sweep.name, job.tier),
                                        directions=["maximize"])
            for k in order[:want]:
                study.enqueue_trial(json.loads(k), skip_if_exists=False)
            del study, storage
        t0 = time.perf_counter()
        try:
            tuner.explore(job.tier)
        except _Enough:
            pass
        wall = time.perf_counter() - t0 - lookup.real_s
        study = optuna.load_study(study_name=study_name(sweep.name, job.tier),
                                  storage=open_storage(storage_url("journal", folder)))
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    finished = [t for t in trials if "evaluation" in t.user_attrs
                and t.state in FINISHED]
    starts = [t for t in trials if t.user_attrs.get("start_point")]
    first_start = value_of(starts[0].user_attrs.get("evaluation")) if starts else None
    return {"job": job, "seen": lookup.seen, "found": lookup.found,
            "trials": len(finished),
            "duplicates": sum(1 for t in finished if "duplicate_of" in t.user_attrs),
            "first_start": first_start, "wall_s": wall, "real_s": lookup.real_s}


def run_all(jobs: list[Job], problems: dict[str, Problem], truths: dict[str, Truth]
            ) -> tuple[list[dict[str, Any]], int]:
    """Every job, on both cores, the longest first; configurations a run had to evaluate
    for real are added to the ground truth (saved as they come). Returns the results and how
    many configurations were added."""
    order = sorted(jobs, key=lambda j: -(j.limit or j.trials or 150))
    out: list[dict[str, Any]] = []
    added = 0
    t0 = last = time.perf_counter()
    with ProcessPoolExecutor(WORKERS) as pool:
        for fut in as_completed([pool.submit(run_job, j) for j in order]):
            r = fut.result()
            out.append(r)
            n = r["job"].problem
            if r["found"]:
                added += truths[n].add(problems[n], r["found"])
            now = time.perf_counter()
            if now - last > 60 or len(out) == len(jobs):
                last = now
                for name, t in truths.items():
                    if t.dirty:
                        t.save(problems[name])
                print(f"  sampler runs: {len(out)}/{len(jobs)}, {now - t0:.0f} s"
                      + (f", {added} configurations added to the ground truth" if added
                         else ""), flush=True)
    return out, added


# -- summaries ------------------------------------------------------------------------------

def to_99(values: list[float], best: float) -> int | None:
    """1-based evaluation count at which the running best first reaches 99% of `best`."""
    top = 0.0
    for i, v in enumerate(values):
        top = max(top, v)
        if best > 0 and top >= 0.99 * best:
            return i + 1
    return None


def reached_at(values: list[float], n: int, best: float) -> float | None:
    if len(values) < n or best <= 0:
        return None
    return max(values[:n], default=0.0) / best


def _median(xs: list[float | None]) -> float | None:
    """Median, None counting as worse than any number (not reached / not measured)."""
    if not xs:
        return None
    ordered = sorted(xs, key=lambda x: math.inf if x is None else x)
    m = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[m]
    a, b = ordered[m - 1], ordered[m]
    return None if a is None or b is None else (a + b) / 2


def _median_value(xs: list[float | None]) -> float | None:
    """Median of values reached (None: the run had not got that far)."""
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got and len(got) == len(xs) else None


def fmt(x: float | None, spec: str = ".3f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


@dataclass
class Floor:
    name: str
    passed: bool
    detail: str


def cut_check(evaluations: Iterable[dict[str, Any]]) -> tuple[float, int]:
    """How safe the cut-short rule (tune/cut.py) is on full evaluations: the largest ratio of a
    configuration's value to the throughput per GPU of one of its probes that missed the SLA
    (above 1 + CUT_MARGIN, a search given an incumbent just below that value would have cut a
    trial that beats it), and how many configurations exceed it."""
    dip, wrong = 0.0, 0
    for a in evaluations:
        value = value_of(a)
        lows = [float(pt["output_tok_s_per_gpu"] or 0.0) for pt in a.get("points") or []
                if pt["usable"] and not pt["feasible"]]
        if value <= 0 or not lows:
            continue
        ratio = value / max(min(lows), 1e-9)
        dip = max(dip, ratio)
        wrong += ratio > 1 + CUT_MARGIN
    return dip, wrong


def print_problem(problem: Problem, truth: Truth, results: list[dict[str, Any]],
                  s: Settings, before: dict[str, float], floors_a: list[str],
                  floors_b: list[str]) -> None:
    """The problem's tables; `before` is each tier's best before the sampler runs (they may
    have evaluated better configurations that a sampled ground truth lacked)."""
    curve_n = curve_length(problem, s)
    print(f"\n=== {problem.name}: {PROBLEMS[problem.name]}")
    d = problem.sweep.deployment
    starts = int(truth.method.split("-local")[1].split("x")[0]) if "-local" in truth.method \
        else 0
    gt = (f"exhaustive ({truth.meta.get('evaluated')} configurations)"
          if truth.method == "exhaustive" else
          f"seeded random sample of {truth.meta.get('sample')}"
          + (f" + local search from the best {starts} and the best of each mode, per "
             f"tier (moves per tier: {truth.meta.get('local_moves')})" if starts else "")
          + "; "
          f"{len(truth.by_tier[problem.tiers[0]])} configurations evaluated so far")
    print(f"    {d['model']} {d.get('backend')} {d.get('gpu')} x {problem.sweep.budget.gpus}, "
          f"{problem.size} configurations ({problem.path.relative_to(REPO)}); default budget "
          f"{problem.sweep.budget.trials} trials, patience {problem.sweep.budget.patience}; "
          f"curve runs {curve_n} evaluations")
    print(f"    ground truth: {gt}"
          + (", cached" if truth.cached else
             f", {truth.meta.get('seconds', 0):.0f} s"))
    for tier in problem.tiers:
        rows = truth.by_tier[tier]
        best, arg = truth.best(tier)
        agg, _ = truth.best(tier, "agg")
        dis, _ = truth.best(tier, "disagg")
        feasible = sum(1 for a in rows.values() if value_of(a) > 0)
        on_budget = sum(1 for a in rows.values() if a.get("limited_by") == "budget")
        mode = json.loads(arg).get("mode", problem.sweep.space.mode[0]) if arg else "-"
        other = dis if mode == "agg" else agg
        margin = f"by {best / other - 1:.1%}" if other > 0 else "(the other mode meets no SLA)"
        intended = INTENDED.get(problem.name)
        note = "" if intended is None or intended == mode else \
            f"  <-- intended {intended}, but {mode} wins"
        print(f"\n  tier {tier} ({problem.sweep.sla[tier]}): best {best:.1f} tok/s/GPU, "
              f"{problem.label(arg) if arg else '-'}")
        print(f"    mode of the true best: {mode} {margin} (best agg {agg:.1f}, best disagg "
              f"{dis:.1f}){note}; {feasible} of {len(rows)} evaluated configurations meet the "
              f"SLA; {on_budget} load searches ended on the probe budget")
        dip, wrong = cut_check(rows.values())
        print(f"    cutting short: the largest ratio of a configuration's value to the "
              f"throughput of one of its probes that missed the SLA is {dip:.3f} (the cut "
              f"allows {1 + CUT_MARGIN:.2f}; {wrong} configurations would be cut wrongly)")
        sample_best = truth.meta.get("sample_best", {}).get(tier)
        if sample_best is not None:
            print(f"    best of the random sample {sample_best:.1f}; after the local search "
                  f"{before[tier]:.1f}; after the sampler runs {best:.1f} (the best used here)")
        start_values: list[float] = []  # the first start point / the best, per seed (tpe)
        print(f"    {'sampler':<7} {'evals to 99% (median)':>22} "
              + " ".join(f"{'@' + format(m, '.0%'):>6}" for m in MARKS)
              + f" | {'default budget: 99%':>19} {'trials':>6} {'evals':>5} {'dups':>4} "
              f"{'value':>5} | {'start':>5} {'budget':>6} | {'s/run':>5} {'s/curve':>7}"
              f" | evals to 99% per seed")
        for sampler in sorted({r["job"].sampler for r in results}, key=SAMPLERS.index):
            cur = [r for r in results if r["job"].tier == tier and r["job"].sampler == sampler
                   and r["job"].kind == "curve"]
            dft = [r for r in results if r["job"].tier == tier and r["job"].sampler == sampler
                   and r["job"].kind == "default"]
            cur.sort(key=lambda r: r["job"].seed)
            dft.sort(key=lambda r: r["job"].seed)
            vals = {id(r): [value_of(rows.get(k)) for k in r["seen"]] for r in cur + dft}
            hits = [to_99(vals[id(r)], best) for r in cur]
            med = _median([None if h is None else float(h) for h in hits])
            shown = f"{med / problem.size:.2%} ({med:.0f})" if med is not None else \
                f"> {curve_n}"
            marks = [_median_value([reached_at(vals[id(r)], max(1, round(m * problem.size)),
                                               best) for r in cur]) for m in MARKS]
            reached = [max(vals[id(r)], default=0.0) >= 0.99 * best for r in dft]
            end_value = _median_value([max(vals[id(r)], default=0.0) / best if best else None
                                       for r in dft])
            starts = [r["first_start"] for r in dft if r["first_start"] is not None]
            start = f"{sum(1 for v in starts if v >= 0.95 * best)}/{len(starts)}" \
                if starts else "-"
            if starts and best:
                start_values = [v / best for v in starts]
            budget_hits = sum(1 for r in cur + dft for k in r["seen"]
                              if (rows.get(k) or {}).get("limited_by") == "budget")
            per_seed = ", ".join("-" if h is None else str(h) for h in hits)
            print(f"    {sampler:<7} {shown:>22} " + " ".join(f"{fmt(m):>6}" for m in marks)
                  + f" | {f'{sum(reached)}/{len(dft)}':>19} "
                  f"{fmt(_median([float(r['trials']) for r in dft]), '.0f'):>6} "
                  f"{fmt(_median([float(len(r['seen'])) for r in dft]), '.0f'):>5} "
                  f"{fmt(_median([float(r['duplicates']) for r in dft]), '.0f'):>4} "
                  f"{fmt(end_value):>5} | {start:>5} {budget_hits:>6} | "
                  f"{fmt(_median([r['wall_s'] for r in dft]), '.1f'):>5} "
                  f"{fmt(_median([r['wall_s'] for r in cur]), '.1f'):>7} | {per_seed}")
            if sampler == "tpe":
                for r in dft:
                    v = max(vals[id(r)], default=0.0)
                    if v < 0.99 * best:
                        floors_a.append(f"{problem.name}/{tier} seed {r['job'].seed}: "
                                        f"{v / best:.3f} of the best after "
                                        f"{len(r['seen'])} evaluations ({r['trials']} trials)")
                if problem.size < 2000 and (med is None or med > 0.03 * problem.size):
                    floors_b.append(f"{problem.name}/{tier}: " + (
                        f"{med / problem.size:.2%} ({med:.0f} of {problem.size})"
                        if med is not None else f"not reached in {curve_n} evaluations"))
        dft = [r for r in results if r["job"].tier == tier and r["job"].kind == "default"
               and r["job"].sampler == "tpe"]
        if dft:
            per = ", ".join(
                f"{max((value_of(rows.get(k)) for k in r['seen']), default=0) / best:.3f} "
                f"({len(r['seen'])} evals, {r['trials']} trials, {r['duplicates']} dups)"
                for r in sorted(dft, key=lambda r: r["job"].seed))
            print(f"    tpe default budget per seed: {per}")
        if start_values:
            print("    tpe first start point per seed (layout from the performance model, "
                  "max_num_seqs the largest, the other knobs the space's first choice): "
                  + ", ".join(f"{v:.3f}" for v in start_values) + " of the best")


def curve_length(problem: Problem, s: Settings) -> int:
    """Evaluations of a curve run: 10% of the space, or the default budget's trials if that
    is more (so that a curve sees whatever the default run sees), at most `curve_max`."""
    share = round(s.curve_share * problem.size)
    budget = s.trials_cap or problem.sweep.budget.trials
    return max(1, min(s.curve_max, problem.size, max(share, budget)))


# -- the peer check -------------------------------------------------------------------------

def peer_check(s: Settings) -> tuple[Floor, list[str]]:
    """A full two-tier default study of the peer problem against AIConfigurator's search."""
    from dynamo_bench.tune.peer import EVALUATORS, PeerComparison, Pick, aic_picks, score

    problem = load_problem(PEER)
    sweep = problem.sweep
    lines: list[str] = []
    # imports are not searching: both tools' modules are loaded before either clock starts
    import aiconfigurator.cli.api  # noqa: F401
    import dynamo.replay  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        t0 = time.perf_counter()
        # a probe store of its own, empty: the timing of a first study on a machine (the
        # shared store holds the ground truth's probes)
        cold = ReplayEvaluator(sweep.workload, sweep.load,
                               store=ProbeStore(Path(tmp) / "probes.db"))
        tuner = Tuner(sweep, folder, options=TuneOptions(verify=False, peer=False,
                                                         trials=s.trials_cap,
                                                         explore_evaluator=cold))
        tuner.run()
        ours_s = time.perf_counter() - t0
        ours: dict[str, Any] = {}
        for tier in tuner.slas:
            study = optuna.load_study(study_name=study_name(sweep.name, tier),
                                      storage=open_storage(tuner.url))
            best = candidates(study, 1)
            done = sum(1 for t in study.trials if t.state in FINISHED)
            ours[tier] = (best[0] if best else None, done)
        t0 = time.perf_counter()
        theirs: dict[str, list[Pick] | str] = {}
        for tier, sla in tuner.slas.items():
            try:
                theirs[tier] = aic_picks(sweep, sla)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                theirs[tier] = f"{type(e).__name__}: {e}"
        aic_s = time.perf_counter() - t0
        evaluators: dict[str, Evaluator] = {
            "study": tuner.explorer, "roofline": ReplayEvaluator(sweep.workload, sweep.load)}
        good = True
        lines.append(f"peer check ({problem.path.relative_to(REPO)}): our default study "
                     f"(both tiers, real replay, no verification, empty probe store) {ours_s:.1f} s; "
                     f"AIConfigurator's search of the same questions {aic_s:.1f} s")
        for tier, sla in tuner.slas.items():
            trial, done = ours[tier]
            picks = theirs[tier]
            if isinstance(picks, str):
                lines.append(f"  {tier}: AIConfigurator gave no answer ({picks})")
                continue
            c = PeerComparison(tier, list(picks))
            if trial is not None:
                c.picks.insert(0, Pick("dynamo-bench", trial.user_attrs.get("config", ""),
                                       trial.user_attrs["deployment"]))
            for i, p in enumerate(c.picks):
                score(p, sla, evaluators, Path(tmp) / "peer" / tier / str(i))
            ratio = c.ratio("study")
            good = good and ratio is not None and ratio >= 1.0
            lines.append(f"  {tier} ({sweep.sla[tier]}), {done} trials:")
            for p in c.picks:
                sc = "  ".join(f"{e} {fmt(p.scores[e].tok_s_per_gpu, '8.1f')}"
                               for e in EVALUATORS if e in p.scores)
                lines.append(f"    {p.source:<14} {p.label[:80]:<80} {sc}")
            ratios = ", ".join(f"{e} {fmt(c.ratio(e), '.3f')}" for e in EVALUATORS)
            lines.append(f"    ours / AIConfigurator's best: {ratios}")
    fast = ours_s <= aic_s
    why = []
    if not fast:
        why.append(f"the study took {ours_s:.1f} s, AIConfigurator {aic_s:.1f} s "
                   f"({ours_s / aic_s:.1f}x)")
    if not good:
        why.append("our pick scores below AIConfigurator's best in a tier (ratios above)")
    detail = "; ".join(why) or f"{ours_s:.1f} s <= {aic_s:.1f} s and every pick at least as good"
    if s.trials_cap:
        detail += f" (quick: {s.trials_cap} trials per tier)"
    return Floor("(c) peer: study no slower than AIConfigurator, pick at least as good",
                 fast and good, detail), lines


# -- main -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help="comma-separated names of sweeps/bench/ files")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler (5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sampled ground truth, 2 seeds, short runs")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer check")
    parser.add_argument("--samplers", default=",".join(SAMPLERS),
                        help=f"comma-separated samplers to run ({', '.join(SAMPLERS)})")
    parser.add_argument("--sample", type=int, default=None,
                        help="ground-truth sample of a large space (2000; --quick: 24)")
    parser.add_argument("--cut-short", choices=("on", "off"), default=None,
                        help="search.cut_short for every sampler run (default: each sweep's)")
    parser.add_argument("--curve-max", type=int, default=None,
                        help="most evaluations of a curve run (2000; --quick: 10)")
    args = parser.parse_args()
    os.environ.setdefault("DYN_LOG", "error")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = QUICK if args.quick else FULL
    s = dataclasses.replace(s, seeds=args.seeds or s.seeds, sample=args.sample or s.sample,
                            curve_max=args.curve_max or s.curve_max)
    names = [n.strip() for n in args.problems.split(",") if n.strip()]
    samplers = [n.strip() for n in args.samplers.split(",") if n.strip()]
    if not samplers or set(samplers) - set(SAMPLERS):
        parser.error(f"--samplers: choose from {', '.join(SAMPLERS)}")
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        parser.error(f"unknown problem(s) {', '.join(unknown)} (choose from "
                     f"{', '.join(PROBLEMS)})")
    started = time.perf_counter()
    stage: dict[str, float] = {}

    t0 = time.perf_counter()
    problems = {n: load_problem(n) for n in names}
    truths = {}
    for n, p in problems.items():
        print(f"ground truth: {n} ({p.size} configurations, tiers {', '.join(p.tiers)})",
              flush=True)
        truths[n] = ground_truth(p, s)
    stage["ground truth"] = time.perf_counter() - t0
    before = {n: {tier: t.best(tier)[0] for tier in problems[n].tiers} for n, t in truths.items()}

    t0 = time.perf_counter()
    jobs = []
    for n, p in problems.items():
        for tier in p.tiers:
            for sampler in samplers:
                for seed in range(s.seeds):
                    common = dict(problem=n, tier=tier, sampler=sampler, seed=seed,
                                  truth_file=str(truths[n].path),
                                  cut_short=None if args.cut_short is None
                                  else args.cut_short == "on")
                    jobs.append(Job(kind="default", limit=None, trials=s.trials_cap, **common))
                    limit = curve_length(p, s)
                    jobs.append(Job(kind="curve", limit=limit, trials=10 * limit, **common))
    print(f"sampler runs: {len(jobs)} ({', '.join(samplers)}; {s.seeds} seeds; default "
          f"budget and curve per tier)", flush=True)
    results, new = run_all(jobs, problems, truths)
    stage["sampler runs"] = time.perf_counter() - t0
    real = sum(r["real_s"] for r in results)
    print(f"sampler runs done: {new} configurations the ground truth lacked were evaluated "
          f"for real ({real:.0f} s of evaluation in the runs)", flush=True)

    floors_a: list[str] = []
    floors_b: list[str] = []
    for n, p in problems.items():
        print_problem(p, truths[n], [r for r in results if r["job"].problem == n], s,
                      before[n], floors_a, floors_b)
    print("\n  columns: evals to 99% = evaluations the tuner ran (start points, failed and "
          "infeasible ones included) until its best was within 1% of the true best, share of "
          "the space (count), from the curve runs; @2%..@10% = best found / true best after "
          "that share of the space ('-': beyond the curve run); default budget = the sweep's "
          "trials and patience: seeds within 1% of the best, finished trials, distinct "
          "evaluations, duplicate trials, best found / true best (medians); start = seeds "
          "whose first start point is within 5% of the best; budget = evaluations whose load "
          "search ended on its probe budget; s/run, s/curve = the sampler's own wall time per "
          "run with the lookup (median)")

    floors = [
        Floor("(a) default study reaches 99% of the best on every problem, tier and seed",
              not floors_a and bool(results),
              "; ".join(floors_a[:6]) + (f" and {len(floors_a) - 6} more"
                                          if len(floors_a) > 6 else "")
              if floors_a else "all reached"),
        Floor("(b) median evaluations to 99% <= 3% of every space under 2,000 configurations",
              not floors_b,
              "; ".join(floors_b) if floors_b else
              "all within 3%" if any(p.size < 2000 for p in problems.values()) else
              "no space under 2,000 configurations in this run"),
    ]
    if not args.no_peer:
        t0 = time.perf_counter()
        print("\npeer check: a full default study of the peer problem, then "
              "AIConfigurator's search", flush=True)
        floor, lines = peer_check(s)
        stage["peer check"] = time.perf_counter() - t0
        print("\n" + "\n".join(lines))
        floors.append(floor)
    if s.quick:
        print("\n(--quick: short runs, and a sampled ground truth where the full one is not "
              "cached; not the benchmark's numbers)")
    print("\nwall time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in stage.items())
          + f"; total {time.perf_counter() - started:.0f} s")
    print("\nfloors:")
    for f in floors:
        print(f"  {'PASS' if f.passed else 'FAIL'}  {f.name}")
        print(f"        {f.detail}")
    print(f"\n{sum(f.passed for f in floors)} of {len(floors)} floors passed")


if __name__ == "__main__":
    main()
