"""The search space: sweep knobs <-> Optuna parameters <-> `DeploymentSpec`.

GPU layouts are enumerated up front so no trial is wasted on a deployment over budget: every
(tp, pp, replicas) per role whose GPU total lies in [budget.min_gpus, budget.gpus] is one choice
of a categorical parameter (`agg.layout`, or `disagg.layout` for a prefill + decode pair). The
other parameters are conditional: `prefill.*` and `decode.*` exist only in disaggregated trials,
`router.overlap_score_credit` only when the router mode is `kv`.

Parameter names: `mode`, `<mode>.layout`, `block_size`, `enable_prefix_caching`,
`<role>.max_num_seqs`, `<role>.max_num_batched_tokens`, `<role>.enable_chunked_prefill`,
`router.mode`, `router.overlap_score_credit`, `router.temperature`. A knob with one value is
fixed, not a parameter.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from dynamo_bench.errors import SpecError
from dynamo_bench.specs.deployment import MAX_REPLICAS, DeploymentSpec, Role
from dynamo_bench.tune.sweep import Range, RoleSpace, SweepSpec, Values, base_deployment

ROLE_KNOBS = ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill")


@dataclass(frozen=True, order=True)
class Layout:
    """`replicas` workers of `tp` x `pp` GPUs each."""

    tp: int
    pp: int
    replicas: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    @property
    def label(self) -> str:
        return f"{self.replicas}x tp{self.tp}" + (f" pp{self.pp}" if self.pp > 1 else "")


_LAYOUT_RE = re.compile(r"^(\d+)x tp(\d+)(?: pp(\d+))?$")


def parse_layout(label: str) -> Layout:
    m = _LAYOUT_RE.match(label.strip())
    if not m:
        raise ValueError(f"not a layout label: {label!r}")
    return Layout(tp=int(m[2]), pp=int(m[3] or 1), replicas=int(m[1]))


def disagg_label(prefill: Layout, decode: Layout) -> str:
    return f"P {prefill.label} + D {decode.label}"


def parse_disagg_label(label: str) -> tuple[Layout, Layout]:
    p, d = label.removeprefix("P ").split(" + D ")
    return parse_layout(p), parse_layout(d)


def _role_parallel(sweep: SweepSpec, role: Role) -> tuple[list[int], list[int]]:
    rs: RoleSpace = getattr(sweep.space, role)
    return rs.tp or sweep.space.tp, rs.pp or sweep.space.pp


def worker_shapes(sweep: SweepSpec, role: Role) -> list[tuple[int, int]]:
    """(tp, pp) pairs allowed for `role` under the per-worker limit."""
    tps, pps = _role_parallel(sweep, role)
    limit = min(sweep.budget.gpus_per_worker or sweep.budget.gpus, sweep.budget.gpus)
    return [(t, p) for t in sorted(tps) for p in sorted(pps) if t * p <= limit]


def role_layouts(sweep: SweepSpec, role: Role, max_gpus: int) -> list[Layout]:
    """Every layout of one role using at most `max_gpus`."""
    out = []
    for tp, pp in worker_shapes(sweep, role):
        most = min(max_gpus // (tp * pp), MAX_REPLICAS)  # a spec's bound on one group
        if sweep.budget.max_replicas:
            most = min(most, sweep.budget.max_replicas)
        out += [Layout(tp, pp, r) for r in range(1, most + 1)]
    return sorted(out, key=lambda lay: (lay.gpus, lay.tp, lay.pp))


def agg_layouts(sweep: SweepSpec) -> list[Layout]:
    b = sweep.budget
    return [lay for lay in role_layouts(sweep, "agg", b.gpus) if lay.gpus >= b.min_gpus]


def disagg_layouts(sweep: SweepSpec) -> list[tuple[Layout, Layout]]:
    b = sweep.budget
    out = []
    for p in role_layouts(sweep, "prefill", b.gpus):
        for d in role_layouts(sweep, "decode", b.gpus - p.gpus):
            if p.gpus + d.gpus >= b.min_gpus:
                out.append((p, d))
    return out


def layout_choices(sweep: SweepSpec, mode: str) -> list[str]:
    if mode == "agg":
        return [lay.label for lay in agg_layouts(sweep)]
    return [disagg_label(p, d) for p, d in disagg_layouts(sweep)]


class Suggester(Protocol):
    """What `suggest_params` needs of an Optuna trial (a `Trial` or a fixed dict wrapper)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1,
                    log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...


def _suggest(trial: Suggester, name: str, values: Values) -> Any:
    if isinstance(values, Range):
        if values.integer:
            return trial.suggest_int(name, int(values.low), int(values.high),
                                     step=int(values.step or 1), log=values.log)
        return trial.suggest_float(name, values.low, values.high, step=values.step,
                                   log=values.log)
    return trial.suggest_categorical(name, list(values))


def _role_values(sweep: SweepSpec, role: Role, knob: str) -> Values | None:
    own = getattr(getattr(sweep.space, role), knob)
    return own if own is not None else getattr(sweep.space, knob)


def _searched(values: Values | None) -> bool:
    return values is not None and (isinstance(values, Range) or len(values) > 1)


def _fixed(values: Values | None) -> Any:
    """The one value of a knob listed with a single choice (None when not listed)."""
    if values is None or isinstance(values, Range):
        return None
    return values[0]


def _pick(trial: Suggester, name: str, values: Values | None) -> Any:
    return _suggest(trial, name, values) if _searched(values) else _fixed(values)


def suggest_params(trial: Suggester, sweep: SweepSpec) -> dict[str, Any]:
    """Ask `trial` for one point of the space; returns the knob values (fixed ones included)."""
    s = sweep.space
    modes = [m for m in s.mode if layout_choices(sweep, m)]
    knobs: dict[str, Any] = {}
    knobs["mode"] = mode = trial.suggest_categorical("mode", modes) if len(modes) > 1 \
        else modes[0]
    layouts = layout_choices(sweep, mode)
    knobs[f"{mode}.layout"] = trial.suggest_categorical(f"{mode}.layout", layouts) \
        if len(layouts) > 1 else layouts[0]
    knobs["block_size"] = _pick(trial, "block_size", s.block_size)
    knobs["enable_prefix_caching"] = _pick(trial, "enable_prefix_caching",
                                           s.enable_prefix_caching)
    for role in (["agg"] if mode == "agg" else ["prefill", "decode"]):
        for knob in ROLE_KNOBS:
            knobs[f"{role}.{knob}"] = _pick(trial, f"{role}.{knob}",
                                            _role_values(sweep, role, knob))  # type: ignore[arg-type]
    routers = s.router.mode
    knobs["router.mode"] = router = trial.suggest_categorical("router.mode", list(routers)) \
        if len(routers) > 1 else routers[0]
    if router == "kv":
        for knob in ("overlap_score_credit", "temperature"):
            knobs[f"router.{knob}"] = _pick(trial, f"router.{knob}", getattr(s.router, knob))
    return knobs


class FixedParams:
    """A `Suggester` that answers from a dict (to rebuild a deployment from stored params)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1,
                    log: bool = False) -> int:
        return int(self.params[name])

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return float(self.params[name])


def knobs_from_params(sweep: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The knob values (fixed ones included) of a trial's Optuna `params`."""
    return suggest_params(FixedParams(params), sweep)


def deployment_for(sweep: SweepSpec, knobs: dict[str, Any], name: str | None = None
                   ) -> DeploymentSpec:
    """The `DeploymentSpec` a trial evaluates. Raises `SpecError` if the backend rejects it."""
    mode = knobs["mode"]
    if mode == "agg":
        shapes: dict[Role, Layout] = {"agg": parse_layout(knobs["agg.layout"])}
    else:
        p, d = parse_disagg_label(knobs["disagg.layout"])
        shapes = {"prefill": p, "decode": d}
    workers: dict[str, dict[str, Any]] = {}
    for role, lay in shapes.items():
        g: dict[str, Any] = {**sweep.worker_defaults, "replicas": lay.replicas, "tp": lay.tp,
                             "pp": lay.pp}
        for knob in ("block_size", "enable_prefix_caching"):
            if knobs.get(knob) is not None:
                g[knob] = knobs[knob]
        for knob in ROLE_KNOBS:
            if knobs.get(f"{role}.{knob}") is not None:
                g[knob] = knobs[f"{role}.{knob}"]
        if g.get("max_num_seqs") and g.get("max_num_batched_tokens") and \
                g["max_num_batched_tokens"] < g["max_num_seqs"]:
            g["max_num_batched_tokens"] = g["max_num_seqs"]  # the engine's own floor
        workers[role] = g
    router: dict[str, Any] = {"mode": knobs["router.mode"]}
    kv = {k: knobs[f"router.{k}"] for k in ("overlap_score_credit", "temperature")
          if knobs.get(f"router.{k}") is not None}
    if kv and router["mode"] == "kv":
        router["kv"] = kv
    fields: dict[str, Any] = {"mode": mode, "workers": workers, "router": router}
    if name:
        fields["name"] = name
    return base_deployment(sweep, **fields)


def describe(knobs: dict[str, Any]) -> str:
    """A short one-line label of a trial's configuration, for progress bars and tables."""
    mode = knobs["mode"]
    parts = [knobs[f"{mode}.layout"]]
    if knobs.get("block_size"):
        parts.append(f"bs{knobs['block_size']}")
    for role in (["agg"] if mode == "agg" else ["prefill", "decode"]):
        seqs = knobs.get(f"{role}.max_num_seqs")
        tokens = knobs.get(f"{role}.max_num_batched_tokens")
        tag = "" if role == "agg" else role[0].upper()
        if seqs:
            parts.append(f"{tag}seqs{seqs}")
        if tokens:
            parts.append(f"{tag}mbt{tokens}")
    parts.append(knobs["router.mode"])
    return f"{mode} " + " ".join(str(p) for p in parts)


# -- finite spaces ----------------------------------------------------------------------------

class _Enumerator:
    """A `Suggester` that walks one combination; `choices` collects each parameter's options."""

    def __init__(self, picks: dict[str, Any]) -> None:
        self.picks = picks
        self.pending: list[tuple[str, list[Any]]] = []

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name in self.picks:
            return self.picks[name]
        self.pending.append((name, list(choices)))
        return list(choices)[0]

    def suggest_int(self, name: str, *a: Any, **k: Any) -> int:
        raise SpecError(f"space.{name.split('.')[-1]}", "is a range; enumerate needs lists")

    suggest_float = suggest_int  # type: ignore[assignment]


def enumerate_params(sweep: SweepSpec) -> Iterator[dict[str, Any]]:
    """Every Optuna parameter combination of a space made only of lists (depth first).

    Raises `SpecError` if a knob is a range (the space is not finite).
    """
    def walk(picks: dict[str, Any]) -> Iterator[dict[str, Any]]:
        e = _Enumerator(picks)
        suggest_params(e, sweep)
        if not e.pending:
            yield picks
            return
        name, choices = e.pending[0]
        for c in choices:
            yield from walk({**picks, name: c})

    yield from walk({})


def space_size(sweep: SweepSpec) -> int | None:
    """Number of configurations of a finite space, None if some knob is a range."""
    try:
        return sum(1 for _ in enumerate_params(sweep))
    except SpecError:
        return None


def check_space(sweep: SweepSpec) -> None:
    """Raise `SpecError` if the space has no layout in budget or a deployment the backend rejects."""
    b = sweep.budget
    for role in ("agg", "prefill", "decode"):
        if ("agg" if role == "agg" else "disagg") not in sweep.space.mode:
            continue
        if not worker_shapes(sweep, role):  # type: ignore[arg-type]
            tps, pps = _role_parallel(sweep, role)  # type: ignore[arg-type]
            per_worker = b.gpus_per_worker is not None and b.gpus_per_worker < b.gpus
            limit = b.gpus_per_worker if per_worker else b.gpus
            raise SpecError("budget.gpus_per_worker" if per_worker else "budget.gpus",
                            f"{limit} is smaller than one {role} worker (the smallest needs "
                            f"{min(tps) * min(pps)} GPUs: tp {min(tps)} x pp {min(pps)}); raise "
                            "the budget or allow smaller tp/pp")
    modes = [m for m in sweep.space.mode if layout_choices(sweep, m)]
    if not modes:
        need = "two workers (prefill + decode)" if sweep.space.mode == ["disagg"] else \
            "one worker"
        raise SpecError("budget.gpus", f"{b.gpus} GPUs (min_gpus {b.min_gpus}) fit no layout: "
                        f"the space needs at least {need}; raise budget.gpus or lower tp/pp")
    for mode in sweep.space.mode:
        if mode not in modes:
            raise SpecError("space.mode", f"{mode} has no layout within budget.gpus "
                            f"{b.gpus} (remove it or raise the budget)")
    _check_backend(sweep)


def _check_backend(sweep: SweepSpec) -> None:
    """Build one deployment per value of every knob so the backend's rules apply now."""
    s = sweep.space
    try:
        base_deployment(sweep, workers={"agg": {}})
    except SpecError as e:
        raise SpecError(f"deployment.{e.field}" if e.field else "deployment", e.message) \
            from None
    for mode in s.mode:
        probe_knobs = suggest_params(FixedParamsDefault({"mode": mode}), sweep)
        variants: list[dict[str, Any]] = [probe_knobs]
        for tp, pp in itertools.product(s.tp, s.pp):
            if mode == "agg":
                variants.append({**probe_knobs, "agg.layout": Layout(tp, pp, 1).label})
        for bs in s.block_size or []:
            variants.append({**probe_knobs, "block_size": bs})
        for v in variants:
            try:
                deployment_for(sweep, v)
            except SpecError as e:
                raise SpecError(_space_field(e.field), e.message) from None


class FixedParamsDefault(FixedParams):
    """`FixedParams` that takes the first choice (or the low end) of anything not given."""

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.params.get(name, list(choices)[0])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1,
                    log: bool = False) -> int:
        return int(self.params.get(name, low))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return float(self.params.get(name, low))


def _space_field(field: str) -> str:
    """`workers.agg.block_size` (a deployment field) -> `space.block_size` (the sweep's)."""
    parts = field.split(".")
    if len(parts) >= 3 and parts[0] == "workers":
        return f"space.{parts[2]}"
    if parts[0] == "router":
        return "space.router." + ".".join(parts[1:])
    return f"deployment.{field}"


# -- neighbours (the tuner's local moves) -----------------------------------------------------

class _Recording(FixedParamsDefault):
    """`FixedParamsDefault` that records every parameter asked, its value and its choices."""

    def __init__(self, params: dict[str, Any], fill: Suggester | None = None) -> None:
        super().__init__(params)
        self.fill = fill  # answers what `params` lacks (None: the first choice)
        self.asked: dict[str, Any] = {}
        self.choices: dict[str, list[Any] | tuple[int, int, int]] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if self.fill is not None and name not in self.params:
            v = self.fill.suggest_categorical(name, choices)
        else:
            v = super().suggest_categorical(name, choices)
        self.asked[name], self.choices[name] = v, list(choices)
        return v

    def suggest_int(self, name: str, low: int, high: int, step: int = 1,
                    log: bool = False) -> int:
        if self.fill is not None and name not in self.params:
            v = self.fill.suggest_int(name, low, high, step, log)
        else:
            v = super().suggest_int(name, low, high, step, log)
        self.asked[name], self.choices[name] = v, (low, high, step)
        return v

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        if self.fill is not None and name not in self.params:
            v = self.fill.suggest_float(name, low, high, step=step, log=log)
        else:
            v = super().suggest_float(name, low, high, step=step, log=log)
        self.asked[name] = v  # no neighbours along a continuous knob
        return v


def complete_params(sweep: SweepSpec, params: dict[str, Any],
                    fill: Suggester | None = None) -> dict[str, Any]:
    """`params` with every parameter the space asks for given (missing ones from `fill`, by
    default their first choice), and none it does not ask for (e.g. KV router weights after a
    switch away)."""
    rec = _Recording(params, fill)
    suggest_params(rec, sweep)
    return rec.asked


def _layout_moves(lay: Layout) -> list[Layout]:
    """One replica more or fewer; twice or half the tp or pp at the same replicas; or the same
    GPUs regrouped (twice the tp on half the replicas, or the other way)."""
    out = [Layout(lay.tp, lay.pp, lay.replicas + 1), Layout(lay.tp * 2, lay.pp, lay.replicas),
           Layout(lay.tp, lay.pp * 2, lay.replicas)]
    if lay.replicas % 2 == 0:
        out.append(Layout(lay.tp * 2, lay.pp, lay.replicas // 2))
    if lay.tp > 1:
        out.append(Layout(lay.tp // 2, lay.pp, lay.replicas * 2))
    if lay.replicas > 1:
        out.append(Layout(lay.tp, lay.pp, lay.replicas - 1))
    if lay.tp > 1:
        out.append(Layout(lay.tp // 2, lay.pp, lay.replicas))
    if lay.pp > 1:
        out.append(Layout(lay.tp, lay.pp // 2, lay.replicas))
    return out


def _value_moves(name: str, value: Any, choices: list[Any] | tuple[int, int, int]) -> list[Any]:
    """The values next to `value` along one parameter (for a numeric list, also its ends)."""
    if isinstance(choices, tuple):  # an integer range: one step either way
        low, high, step = choices
        return [v for v in (value - step, value + step) if low <= v <= high]
    if name == "agg.layout":
        labels = {lay.label for lay in _layout_moves(parse_layout(value))}
        return [c for c in choices if c in labels]
    if name == "disagg.layout":
        p, d = parse_disagg_label(value)
        labels = {disagg_label(q, d) for q in _layout_moves(p)} | \
            {disagg_label(p, q) for q in _layout_moves(d)}
        return [c for c in choices if c in labels]
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        ordered = sorted(choices)
        i = ordered.index(value)
        # the next value either way, and the two ends: a batch limit's effect can be flat
        # over one step and jump at the next (the 70B peer problem's decode
        # max_num_batched_tokens: 4096 -> 8192 gains nothing, 16384 gains 2.6%)
        near = {ordered[j] for j in (i - 1, i + 1, 0, len(ordered) - 1)
                if 0 <= j < len(ordered) and j != i}
        return sorted(near)
    return [c for c in choices if c != value]  # unordered: every other choice


def neighbours(sweep: SweepSpec, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations one move away from `params` (complete Optuna params each): one
    parameter changed to an adjacent value (a layout by one replica, or by twice or half its
    tp or pp; a numeric list to the next value up or down, or to its lowest or highest; any
    other list to another value).
    The mode does not change: agg and disagg have different parameters."""
    rec = _Recording(params)
    suggest_params(rec, sweep)
    out = []
    for name, value in rec.asked.items():
        if name == "mode":
            continue
        for v in _value_moves(name, value, rec.choices.get(name, [value])):
            out.append(complete_params(sweep, {**rec.asked, name: v}))
    return out
