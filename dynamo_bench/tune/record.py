"""One trial of a study as a typed, immutable record: what it ran, what it measured, its verdict.

The tuner writes a trial's result into Optuna user attributes (the storage format, unchanged
since schema version 1):

    evaluation    the evaluator's `Evaluation.to_attrs()`: status, fidelity, reason, points
                  (every probe, in the order run), best (the feasible probe with the highest
                  output tok/s per GPU), limited_by, elapsed_s, gpu_hours, memory_shortfall
    status        complete | infeasible | failed (also set on an interrupted trial) | pruned
                  (cut short: it cannot beat the tier's best so far; Optuna state PRUNED)
    reason        why a trial is infeasible, failed or pruned
    fidelity      replay | live            config       the configuration's label
    deployment    the DeploymentSpec dump  predicted    (verify) the explored best probe
    verifies      (verify) the explored trial number it re-measures
    duplicate_of  the finished trial whose evaluation this one reused (a re-proposal: not
                  counted against the budget)
    local_move    queued by the tuner as an unexplored neighbour after a re-proposal
    start_point   an enqueued guess of the performance model
    retry_of      the interrupted trial this one re-runs
    tuner         the id of the tuner process that ran it

and the SLA slack of each constraint with `trial.set_constraint`. `TrialRecord.from_trial`
reads all of it back; study folders written by any schema-1 dynamo-bench load. No Optuna import
happens here: `from_trial` takes any object shaped like `optuna.trial.FrozenTrial`.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.tune.names import SCHEMA_VERSION

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

Kind = Literal["explore", "verify"]
#: `optuna.trial.TrialState` names.
State = Literal["RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"]
#: `tune.evaluate.Status` (a trial not yet measured has none).
Status = Literal["complete", "infeasible", "failed", "pruned"]
#: `tune.evaluate.Fidelity`.
Fidelity = Literal["replay", "live"]

_CONSTRAINT_PREFIX = "constraints:"  # Optuna's system attribute per `set_constraint` key


class ProbePoint(BaseModel):
    """One probe of a trial's load search: the metrics kept in the storage
    (`tune.evaluate.POINT_FIELDS`, typed as in `specs.Metrics`), the load it ran at, whether it
    met the SLA (`feasible`) and whether the measurement can be trusted (`usable`).

    Unknown fields are ignored, so that probes stored by another version still load.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    concurrency: int | None = None
    request_rate: float | None = None
    gpus: int = 0
    ttft_ms_p50: float | None = None
    ttft_ms_p90: float | None = None
    ttft_ms_p99: float | None = None
    ttft_ms_mean: float | None = None
    itl_ms_p50: float | None = None
    itl_ms_p90: float | None = None
    itl_ms_p99: float | None = None
    itl_ms_mean: float | None = None
    e2e_ms_p50: float | None = None
    e2e_ms_p90: float | None = None
    output_tok_s: float | None = None
    output_tok_s_per_gpu: float | None = None
    output_tok_s_per_user: float | None = None
    request_s: float | None = None
    goodput_request_s: float | None = None
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    prefix_cache_hit_rate: float | None = None
    client_saturated: bool | None = None
    saturation_reason: str | None = None
    time_base: Literal["wall", "simulated"] = "wall"
    source: Literal["aiperf", "replay"] = "aiperf"
    duration_s: float | None = None
    load: float
    feasible: bool
    usable: bool


class TrialRecord(BaseModel):
    """Everything one trial holds, typed. `tier` and `kind` say which of the study's Optuna
    studies it belongs to (`<sweep>.<tier>` or `<sweep>.<tier>.verify`).

    Missing attributes read as None (a trial still waiting, running, or failed before it was
    measured): `probes` is then empty and `best` None. `constraints` maps each SLA constraint
    (and `memory`) to its signed slack, <= 0 when met.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    number: int
    tier: str
    kind: Kind
    state: State
    status: Status | None = None
    reason: str | None = None
    fidelity: Fidelity | None = None
    config: str | None = None
    params: dict[str, Any] = {}
    deployment: dict[str, Any] | None = None
    probes: list[ProbePoint] = []
    best: ProbePoint | None = None
    limited_by: str | None = None
    predicted: ProbePoint | None = None
    verifies: int | None = None
    duplicate_of: int | None = None
    local_move: bool = False
    start_point: bool = False
    retry_of: int | None = None
    elapsed_s: float | None = None
    gpu_hours: float | None = None
    memory_shortfall: float | None = None
    constraints: dict[str, float] = {}
    values: list[float] | None = None
    started: datetime.datetime | None = None
    completed: datetime.datetime | None = None
    tuner: str | None = None

    @classmethod
    def from_trial(cls, trial: FrozenTrial, tier: str, kind: Kind) -> TrialRecord:
        """The record of an Optuna trial as the tuner wrote it (see the module doc)."""
        ua = trial.user_attrs
        ev = ua.get("evaluation") or {}
        state = trial.state.name
        return cls(
            number=trial.number, tier=tier, kind=kind, state=state,
            status=ua.get("status", "failed" if state == "FAIL" else None),
            reason=ua.get("reason"), fidelity=ua.get("fidelity"), config=ua.get("config"),
            params=dict(trial.params), deployment=ua.get("deployment") or None,
            probes=ev.get("points") or [], best=ev.get("best") or None,
            limited_by=ev.get("limited_by"), predicted=ua.get("predicted") or None,
            verifies=ua.get("verifies"), duplicate_of=ua.get("duplicate_of"),
            local_move=bool(ua.get("local_move", False)),
            start_point=bool(ua.get("start_point", False)), retry_of=ua.get("retry_of"),
            elapsed_s=ev.get("elapsed_s"), gpu_hours=ev.get("gpu_hours"),
            memory_shortfall=ev.get("memory_shortfall"),
            constraints={k.removeprefix(_CONSTRAINT_PREFIX): v
                         for k, v in trial.system_attrs.items()
                         if k.startswith(_CONSTRAINT_PREFIX)},
            values=list(trial.values) if trial.values else None,
            started=trial.datetime_start, completed=trial.datetime_complete,
            tuner=ua.get("tuner"))

    @property
    def value(self) -> float | None:
        """The first objective (output tok/s per GPU at the best feasible load; 0 without)."""
        return self.values[0] if self.values else None

    @property
    def feasible(self) -> bool:
        """A finished trial that found a load meeting its SLA."""
        return self.state == "COMPLETE" and self.status == "complete"

    @property
    def mode(self) -> str | None:
        """The deployment's mode (agg or disagg), None without a deployment."""
        return (self.deployment or {}).get("mode")

    @property
    def gpus(self) -> int | None:
        """GPUs the deployment uses (replicas x tp x pp over its worker groups)."""
        workers = (self.deployment or {}).get("workers") or {}
        if not workers:
            return None
        return sum(g.get("replicas", 1) * g.get("tp", 1) * g.get("pp", 1)
                   for g in workers.values())

    @property
    def deployment_key(self) -> str:
        """The deployment as canonical JSON: equal for trials that run the same deployment."""
        return json.dumps(self.deployment, sort_keys=True)

    def probes_at(self, load: float | None) -> list[ProbePoint]:
        """The probes run at `load`, in the order they ran (all of them for None)."""
        return [p for p in self.probes if load is None or p.load == load]

    def spec(self) -> DeploymentSpec:
        """The deployment as a validated `DeploymentSpec` (ValueError without one)."""
        if self.deployment is None:
            raise ValueError(f"trial {self.number} has no deployment")
        return DeploymentSpec.model_validate(self.deployment)


__all__ = ["Fidelity", "Kind", "ProbePoint", "State", "Status", "TrialRecord"]
