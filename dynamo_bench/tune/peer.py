"""Side by side with AIConfigurator: its picks for the study's question, scored like ours.

AIConfigurator (`aiconfigurator cli default`) answers the same question a sweep asks (a model,
a GPU type, a GPU budget, input and output lengths, a TTFT and an ITL target) from its database
of measured kernel timings, with an analytical model of batching. It enumerates TP/PP, replica
counts and prefill:decode ratios; it does not see the KV router, prefix sharing between requests,
length variance or the batch-token limits. For each SLA tier this module:

1. runs AIConfigurator on the question and takes its best aggregated and best disaggregated
   picks (with its own estimate of their throughput);
2. turns each pick into a `DeploymentSpec` (the sweep's fixed fields and worker defaults, the
   engines' defaults elsewhere, and the default router: AIConfigurator does not pick one);
3. scores AIConfigurator's picks and dynamo-bench's own pick with the same evaluators and the
   same load search: the study's own replay (its timing chain) and a replay on the calibrated
   roofline, so that no single timing source decides the comparison.

The result is a `PeerComparison` per tier, stored with the study (so `report` shows it without
rerunning anything) and printed at the end of `tune`, in `summary.md`, `report.json` and
`report.html`. `ratio` is dynamo-bench's tokens/s per GPU over the better of AIConfigurator's
picks, per evaluator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dynamo_bench.errors import DynamoBenchError
from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.specs.deployment import DeploymentSpec
from dynamo_bench.specs.sla import SLA
from dynamo_bench.tune.evaluate import Evaluation, Evaluator, ReplayEvaluator
from dynamo_bench.tune.sweep import SweepSpec, base_deployment

#: Evaluators every pick is scored with: the study's own replay, and the calibrated roofline.
EVALUATORS = ("study", "roofline")
#: AIConfigurator's generated launch scripts set this batch limit.
AIC_MAX_NUM_SEQS = 512


@dataclass
class Score:
    """One pick under one evaluator, at the highest load meeting the tier's SLA."""

    tok_s_per_gpu: float | None
    tok_s_per_user: float | None
    ttft_ms_p90: float | None
    itl_ms_p90: float | None
    concurrency: float | None
    status: str
    reason: str | None = None

    @classmethod
    def of(cls, ev: Evaluation) -> Score:
        b = ev.best or {}
        return cls(b.get("output_tok_s_per_gpu"), b.get("output_tok_s_per_user"),
                   b.get("ttft_ms_p90"), b.get("itl_ms_p90"), b.get("load"), ev.status,
                   ev.reason)


@dataclass
class Pick:
    """A deployment one tool picked: who, what, its own estimate, and our scores of it."""

    source: str  # "dynamo-bench" or "aiconfigurator"
    label: str
    deployment: dict[str, Any]
    own_estimate_tok_s_per_gpu: float | None = None
    scores: dict[str, Score] = field(default_factory=dict)


@dataclass
class PeerComparison:
    """A tier's side-by-side; `skipped` says why there is none (AIConfigurator did not cover
    the question)."""

    tier: str
    picks: list[Pick] = field(default_factory=list)
    skipped: str | None = None
    aiconfigurator_version: str | None = None

    def ratio(self, evaluator: str) -> float | None:
        """dynamo-bench's tokens/s per GPU over the better of AIConfigurator's picks."""
        ours = [p.scores[evaluator].tok_s_per_gpu for p in self.picks
                if p.source == "dynamo-bench" and evaluator in p.scores]
        theirs = [p.scores[evaluator].tok_s_per_gpu or 0.0 for p in self.picks
                  if p.source == "aiconfigurator" and evaluator in p.scores]
        if not ours or ours[0] is None or not theirs or max(theirs) <= 0:
            return None
        return ours[0] / max(theirs)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ratio"] = {e: self.ratio(e) for e in EVALUATORS}
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PeerComparison:
        picks = [Pick(p["source"], p["label"], p["deployment"],
                      p.get("own_estimate_tok_s_per_gpu"),
                      {k: Score(**v) for k, v in p.get("scores", {}).items()})
                 for p in doc.get("picks", [])]
        return cls(doc["tier"], picks, doc.get("skipped"), doc.get("aiconfigurator_version"))


class AICQuestionError(DynamoBenchError):
    """AIConfigurator cannot answer the sweep's question (model, GPU, engine, precision)."""


def _limits(sla: SLA) -> tuple[float, float]:
    ttft = min((c.threshold for c in sla.constraints if c.metric == "ttft_ms" and c.op == "<="),
               default=10_000.0)
    itl = min((c.threshold for c in sla.constraints if c.metric == "itl_ms" and c.op == "<="),
              default=1_000.0)
    return ttft, itl


def question(sweep: SweepSpec, sla: SLA) -> dict[str, Any]:
    """The sweep's question in AIConfigurator's terms (`cli_default` keyword arguments)."""
    from dynamo_bench.perf.aic import ENGINES, SYSTEMS, arch_and_config, model_dir

    d = sweep.deployment
    w = sweep.workload
    if w.isl is None or w.osl is None:
        raise AICQuestionError("the workload is a trace: AIConfigurator needs fixed lengths")
    gpu = d.get("gpu", "h100_sxm")
    if gpu not in SYSTEMS:
        raise AICQuestionError(f"AIConfigurator has no system for GPU {gpu!r}")
    if d.get("precision", "bf16") != "bf16":
        raise AICQuestionError("AIConfigurator's default search is run at the checkpoint's "
                               "precision; only bf16 sweeps are compared")
    arch, config = arch_and_config(d["model"])
    prefix = w.shared_prefix_tokens
    ttft, itl = _limits(sla)
    return {"model_path": str(model_dir(config, arch.name)), "total_gpus": sweep.budget.gpus,
            "system": SYSTEMS[gpu], "backend": ENGINES[d.get("backend", "mocker")],
            "isl": int(w.isl.mean + prefix), "osl": int(w.osl.mean), "prefix": int(prefix),
            "ttft": float(ttft), "tpot": float(itl), "top_n": 3}


def aic_picks(sweep: SweepSpec, sla: SLA) -> list[Pick]:
    """AIConfigurator's best aggregated and best disaggregated picks for the question.

    Raises:
        AICQuestionError: AIConfigurator cannot answer it (the reason says why).
    """
    from aiconfigurator.cli.api import cli_default

    from dynamo_bench.perf.aic import quiet

    q = question(sweep, sla)
    try:
        with quiet():
            result = cli_default(**q)
    except Exception as e:  # noqa: BLE001 - its search raises many kinds for "no answer"
        raise AICQuestionError(f"AIConfigurator found no answer: {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]}") from None
    picks = []
    for mode, df in sorted(result.best_configs.items()):
        if df is None or df.empty:
            continue
        row = df.iloc[0]
        try:
            spec, label = _deployment(sweep, mode, row)
        except DynamoBenchError:
            continue  # a layout the engine cannot run under this sweep (e.g. a knob it lacks)
        picks.append(Pick("aiconfigurator", label, spec.model_dump(mode="json",
                                                                  exclude_none=True),
                          float(row["tokens/s/gpu"])))
    if not picks:
        raise AICQuestionError("AIConfigurator found no configuration meeting the SLA")
    return picks


def _deployment(sweep: SweepSpec, mode: str, row: Any) -> tuple[DeploymentSpec, str]:
    base = {**sweep.worker_defaults, "max_num_seqs": AIC_MAX_NUM_SEQS}
    if mode == "agg":
        tp, pp = int(row["tp"]), int(row["pp"])
        replicas = max(1, sweep.budget.gpus // (tp * pp))
        workers = {"agg": {**base, "replicas": replicas, "tp": tp, "pp": pp}}
        label = f"agg {replicas}x tp{tp}" + (f" pp{pp}" if pp > 1 else "")
    else:
        p = {"replicas": int(row["(p)workers"]), "tp": int(row["(p)tp"]), "pp": int(row["(p)pp"])}
        d = {"replicas": int(row["(d)workers"]), "tp": int(row["(d)tp"]), "pp": int(row["(d)pp"])}
        workers = {"prefill": {**base, **p}, "decode": {**base, **d}}
        label = (f"disagg P {p['replicas']}x tp{p['tp']} + D {d['replicas']}x tp{d['tp']}")
    spec = base_deployment(sweep, name=f"{sweep.name}-aic-{mode}", mode=mode, workers=workers)
    return spec, label


def score(pick: Pick, sla: SLA, evaluators: dict[str, Evaluator], out_dir: Path) -> None:
    """Score `pick` with every evaluator (in place)."""
    spec = DeploymentSpec.model_validate(pick.deployment)
    for name, ev in evaluators.items():
        s = spec if name == "study" else spec.model_copy(update={"timing": "roofline"})
        pick.scores[name] = Score.of(ev.evaluate(s, sla, out_dir / name))


def compare(sweep: SweepSpec, tier: str, ours: DeploymentSpec | None, label: str | None,
            out_dir: Path, evaluator: ReplayEvaluator | None = None) -> PeerComparison:
    """The tier's side by side (see the module docstring). Never raises for AIConfigurator
    failing to answer: the comparison is then `skipped` with the reason."""
    from dynamo_bench.perf.aic import version

    sla = sweep.slas()[tier]
    out = PeerComparison(tier, aiconfigurator_version=version())
    try:
        ModelArch.of(sweep.deployment["model"])
        out.picks = aic_picks(sweep, sla)
    except (AICQuestionError, DynamoBenchError) as e:
        out.skipped = str(e)
        return out
    if ours is not None:
        out.picks.insert(0, Pick("dynamo-bench", label or "dynamo-bench",
                                 ours.model_dump(mode="json", exclude_none=True)))
    study = evaluator or ReplayEvaluator(sweep.workload, sweep.load)
    evaluators: dict[str, Evaluator] = {"study": study,
                                        "roofline": ReplayEvaluator(sweep.workload, sweep.load)}
    for i, pick in enumerate(out.picks):
        score(pick, sla, evaluators, out_dir / f"{i}")
    return out


def stored(meta: dict[str, Any], tier: str) -> PeerComparison | None:
    """A tier's comparison as a study keeps it (`StudyRecord.meta`), if the study ran one."""
    doc = meta.get("peer", {}).get(tier)
    return PeerComparison.from_json(doc) if doc else None


def table_rows(c: PeerComparison) -> list[dict[str, Any]]:
    """One row per pick and evaluator, for tables: pick, tok/s/GPU, tok/s/user, TTFT, ITL."""
    rows = []
    best_theirs = {e: max((p.scores[e].tok_s_per_gpu or 0.0 for p in c.picks
                           if p.source == "aiconfigurator" and e in p.scores), default=0.0)
                   for e in EVALUATORS}
    for p in c.picks:
        for e in EVALUATORS:
            s = p.scores.get(e)
            if s is None:
                continue
            rows.append({
                "tool": p.source, "pick": p.label, "evaluator": e,
                "tok/s/GPU": s.tok_s_per_gpu, "tok/s/user": s.tok_s_per_user,
                "TTFT p90 ms": s.ttft_ms_p90, "ITL p90 ms": s.itl_ms_p90,
                "concurrency": s.concurrency,
                "vs AIConfigurator's best": (s.tok_s_per_gpu / best_theirs[e]
                                             if s.tok_s_per_gpu and best_theirs[e] else None),
                "AIConfigurator's estimate": p.own_estimate_tok_s_per_gpu})
    return rows


def markdown(c: PeerComparison) -> str:
    """The comparison as a Markdown section (for summary.md and the end of `tune`)."""
    lines = ["## Side by side with AIConfigurator", ""]
    if c.skipped:
        return "\n".join(lines + [f"Not compared: {c.skipped}.", ""])
    lines += [f"AIConfigurator {c.aiconfigurator_version}'s best picks for the same question, "
              "scored by the same evaluators and load search as dynamo-bench's pick "
              "(`study`: this study's replay; `roofline`: a replay on the calibrated roofline).",
              "", "| tool | pick | evaluator | tok/s/GPU | tok/s/user | TTFT p90 ms | "
              "ITL p90 ms | vs AIConfigurator's best | AIConfigurator's estimate |",
              "|---|---|---|---|---|---|---|---|---|"]

    def f(v: Any, d: int = 1) -> str:
        return "-" if v is None else f"{v:,.{d}f}"

    for r in table_rows(c):
        vs, estimate = r["vs AIConfigurator's best"], r["AIConfigurator's estimate"]
        lines.append(f"| {r['tool']} | {r['pick']} | {r['evaluator']} | {f(r['tok/s/GPU'])} | "
                     f"{f(r['tok/s/user'])} | {f(r['TTFT p90 ms'])} | {f(r['ITL p90 ms'], 2)} "
                     f"| {f(vs, 2)} | {f(estimate)} |")
    ratios = ", ".join(f"{e} {c.ratio(e):.2f}x" for e in EVALUATORS if c.ratio(e) is not None)
    if ratios:
        lines += ["", f"dynamo-bench's pick / AIConfigurator's best: {ratios}."]
    return "\n".join(lines) + "\n"
