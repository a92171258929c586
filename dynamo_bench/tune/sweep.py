"""The sweep file: what to search, under which budget, for which workload and SLA tiers.

    name: quickstart
    deployment: {model: Qwen3-0.6B, backend: mocker, gpu: h100_sxm}   # fixed in every trial
    budget: {gpus: 4, gpus_per_worker: 2, trials: 40, wall_s: 300, patience: 15}
    space:
      mode: [agg, disagg]
      tp: [1, 2]                     # every role; `prefill:` / `decode:` / `agg:` override
      block_size: [16, 32, 64]
      max_num_seqs: [32, 64, 128]
      router: {mode: [kv, round-robin], overlap_score_credit: {low: 0.0, high: 2.0}}
    workload: workloads/chat.yaml      # a path (relative to this file) or an inline mapping
    sla:
      interactive: ttft_ms.p90<=300,itl_ms.p90<=15
      batch: ttft_ms.p90<=2000,itl_ms.p90<=50

This module holds the file's types and their field-level rules. `tune.sweep_file.load_sweep` is
the one boundary where such a file becomes a validated `SweepSpec`: it adds the checks that need
the search space (tune/space.py) as well.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from dynamo_bench.specs.base import Strict, _FieldError, field_error
from dynamo_bench.specs.deployment import Backend, DeploymentSpec, Mode, RouterMode
from dynamo_bench.specs.loading import parse_spec
from dynamo_bench.specs.sla import SLA, parse_sla
from dynamo_bench.specs.workload import WorkloadSpec

Scalar = int | float | bool | str


class Range(Strict):
    """A numeric range searched by Optuna: integers when `low`, `high` (and `step`) are integers."""

    low: int | float
    high: int | float
    step: int | float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise field_error("high", f"{self.high:g} is invalid: must be >= low ({self.low:g})")
        if self.log and self.low <= 0:
            raise field_error("low", f"{self.low:g} is invalid: a log range needs low > 0")
        if self.log and self.step is not None:
            raise field_error("step", "a log range takes no step (remove step or log)")
        return self

    @property
    def integer(self) -> bool:
        """Integers searched when low, high (and step) are written as integers (`2`, not `2.0`)."""
        return all(isinstance(v, int) and not isinstance(v, bool)
                   for v in (self.low, self.high, self.step or 1))


def _values(v: Any) -> Any:
    """A list of choices or a `{low, high}` range, with errors that name the bad part."""
    if isinstance(v, Range):
        return v
    if isinstance(v, dict):
        try:
            return Range.model_validate(v)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            pinned = first.get("ctx", {}).get("error")
            if isinstance(pinned, _FieldError):
                raise pinned from None
            where = ".".join(str(p) for p in first["loc"])
            text = "unknown field (allowed: low, high, step, log)" \
                if first["type"] == "extra_forbidden" else first["msg"]
            raise field_error(where, text) from None
    if isinstance(v, list):
        return _nonempty(v)
    raise ValueError(f"{v!r} is invalid: give a list of values or a range {{low: ..., high: ...}}")


Values = Annotated[list[Scalar] | Range, BeforeValidator(_values)]


def _nonempty(v: Any) -> Any:
    if isinstance(v, list) and not v:
        raise ValueError("is an empty list: give at least one value")
    if isinstance(v, list) and len(set(map(repr, v))) != len(v):
        raise ValueError(f"{v} repeats a value")
    return v


class RoleSpace(Strict):
    """Engine knobs searched for one worker role (None: inherit the space-wide choice)."""

    tp: list[int] | None = None
    pp: list[int] | None = None
    max_num_seqs: Values | None = None
    max_num_batched_tokens: Values | None = None
    enable_chunked_prefill: list[bool] | None = None

    _check = field_validator("*")(classmethod(lambda cls, v: _nonempty(v)))


class RouterSpace(Strict):
    """Router choices; the KV weights are searched only in trials whose mode is `kv`."""

    mode: list[RouterMode] = ["kv"]
    overlap_score_credit: Values | None = None
    temperature: Values | None = None

    _check = field_validator("*")(classmethod(lambda cls, v: _nonempty(v)))


class SpaceSpec(Strict):
    """The knobs searched. A list is a categorical choice, `{low, high}` a range.

    Replicas are not listed: every (tp, pp, replicas) layout that fits `budget` is a choice.
    """

    mode: list[Mode] = ["agg"]
    tp: list[int] = [1]
    pp: list[int] = [1]
    block_size: list[int] | None = None
    max_num_seqs: Values | None = None
    max_num_batched_tokens: Values | None = None
    enable_prefix_caching: list[bool] | None = None
    enable_chunked_prefill: list[bool] | None = None
    agg: RoleSpace = RoleSpace()
    prefill: RoleSpace = RoleSpace()
    decode: RoleSpace = RoleSpace()
    router: RouterSpace = RouterSpace()

    _check = field_validator("mode", "tp", "pp", "block_size", "max_num_seqs",
                             "max_num_batched_tokens", "enable_prefix_caching",
                             "enable_chunked_prefill")(classmethod(lambda cls, v: _nonempty(v)))

    @field_validator("tp", "pp")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        bad = [x for x in v if x < 1]
        if bad:
            raise ValueError(f"{bad[0]} is invalid: must be >= 1")
        return v


class Budget(Strict):
    """GPUs a deployment may use and how much searching to do."""

    gpus: int = Field(ge=1, description="most GPUs one deployment may use")
    min_gpus: int = Field(1, ge=1, description="fewest GPUs one deployment may use")
    gpus_per_worker: int | None = Field(None, ge=1, description="largest tp x pp of a worker")
    max_replicas: int | None = Field(None, ge=1, description="most workers in one role")
    trials: int = Field(40, ge=1, description=(
        "distinct evaluations per SLA tier (a configuration proposed again is answered from "
        "its earlier trial and does not count)"))
    wall_s: float | None = Field(None, gt=0, description="wall-time limit of the exploration")
    gpu_hours: float | None = Field(None, gt=0, description="limit on live GPU-backend trials")
    patience: int | None = Field(None, ge=1, description="stop a tier after this many "
                                 "distinct evaluations without a better feasible value")

    @model_validator(mode="after")
    def _order(self) -> Budget:
        if self.min_gpus > self.gpus:
            raise field_error("min_gpus", f"{self.min_gpus} is invalid: must be <= gpus "
                              f"({self.gpus})")
        return self


class Fidelity(Strict):
    """Which evaluator explores and which verifies (see DESIGN: one search, three fidelities)."""

    explore: Literal["replay", "live"] = "replay"
    verify: Literal["live", "none"] = "live"
    verify_top: int = Field(2, ge=1, description="best distinct candidates verified per tier")


class LoadSearch(Strict):
    """The per-trial load search: from the performance model's estimate of the SLA boundary,
    doubled or halved to bracket it between `start` and `limit`, then bisected to adjacent
    concurrencies. Its probe budget is derived from `start` and `limit`
    (loadgen/search.py: `probe_budget`)."""

    start: int = Field(1, ge=1, description="the lowest concurrency a trial may settle on")
    limit: int = Field(256, ge=1, description="the highest concurrency a trial may try")
    requests_per_slot: float = Field(8.0, gt=0, description=(
        "requests per unit of concurrency in a probe (at least the workload's request_count);"
        " the same in replay and live, so predictions and verifications compare"))
    verify_probes: int = Field(4, ge=1, description=(
        "live probes a verification may spend walking down from the predicted load"))
    first_step: float | None = Field(0.1, gt=0, lt=1, description=(
        "the first step up or down from the model's guess of the boundary, as a share of the "
        "load; each further step doubles it until steps double the load (null: double from "
        "the start)"))
    replay_repeats: int = Field(3, ge=1, description=(
        "replay only: runs of a probe within 5% of an SLA limit when the KV router picks "
        "among equal workers at random; the median run (by SLA slack) is kept"))

    @model_validator(mode="before")
    @classmethod
    def _no_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_probes" in data:
            raise field_error("max_probes", "is no longer a setting: the probe budget is "
                              "derived from start and limit (remove it)")
        return data

    @model_validator(mode="after")
    def _order(self) -> LoadSearch:
        if self.start > self.limit:
            raise field_error("limit", f"{self.limit} is invalid: must be >= start "
                              f"({self.start})")
        return self


class SearchSettings(Strict):
    """The Optuna sampler and its seed; `start_points` guesses from the performance model;
    `cut_short`: Optuna pruning of trials that cannot beat the tier's best so far."""

    sampler: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int = 0
    start_points: int = Field(3, ge=0)
    cut_short: bool = Field(False, description=(
        "stop a trial's load search once a probe that misses the SLA suggests it cannot beat "
        "the tier's best so far (the trial is pruned; throughput objective only). Off by "
        "default: under overload the replay's throughput can fall, so the rule is a "
        "heuristic that can cut the best configuration"))


class SweepSpec(Strict):
    """A whole tuning study; see the module docstring for the file format."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                      description="lowercase letters, digits and '-'")
    deployment: dict[str, Any] = Field(description="the DeploymentSpec fields every trial "
                                       "shares (model, backend, gpu, precision, timing, ...)")
    worker_defaults: dict[str, Any] = Field(default_factory=dict, description=(
        "WorkerGroup fields every worker group shares and the space does not search "
        "(gpu_memory_utilization, speedup_ratio, kv_connector, ...)"))
    budget: Budget
    space: SpaceSpec = SpaceSpec()
    workload: WorkloadSpec
    sla: dict[str, str] = Field(min_length=1, description="tier name -> SLA string")
    objective: Literal["throughput_per_gpu", "pareto"] = "throughput_per_gpu"
    fidelity: Fidelity = Fidelity()
    load: LoadSearch = LoadSearch()
    search: SearchSettings = SearchSettings()
    peer: Literal["aiconfigurator", "none"] = Field("aiconfigurator", description=(
        "score AIConfigurator's own picks for the same question next to the answer "
        "(tune/peer.py); none: skip"))
    storage: str | None = Field(None, description="sqlite (default, in the study folder), "
                                "journal, or a database URL (postgresql://...)")

    @field_validator("deployment")
    @classmethod
    def _fixed_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        searched = {"mode", "workers", "router"} & set(v)
        if searched:
            raise ValueError(f"{sorted(searched)[0]!r} is searched: set it under space, not "
                             "deployment")
        if "model" not in v:
            raise ValueError("needs a model (a catalogue name or a model directory)")
        return v

    @field_validator("sla")
    @classmethod
    def _tiers(cls, v: dict[str, str]) -> dict[str, str]:
        for tier, text in v.items():
            if not tier.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"tier name {tier!r} is invalid: use letters, digits, - and _")
            parse_sla(str(text), tier, f"sla.{tier}")  # the SpecError names the tier
        return v

    @property
    def backend(self) -> Backend:
        return self.deployment.get("backend", "mocker")

    def slas(self) -> dict[str, SLA]:
        """SLA tiers in file order."""
        return {tier: parse_sla(text, tier, f"sla.{tier}") for tier, text in self.sla.items()}


def base_deployment(sweep: SweepSpec, **fields: Any) -> DeploymentSpec:
    """A `DeploymentSpec` from the sweep's fixed fields plus `fields` (mode, workers, router)."""
    data = {"name": sweep.name, **sweep.deployment, **fields}
    return parse_spec(DeploymentSpec, data)
