"""Write the notebooks in this folder from the cell sources below (run after editing them).

    uv run python notebooks/build.py

Each notebook has one cell tagged `parameters` (papermill injects its overrides after it)
and after it only calls to the public `dynamo_bench` API (plus pandas/matplotlib display).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["quickstart"] = [
    ("md", """# Quickstart: an SLA-constrained tuning study

Searches the deployment knobs of a model on a GPU budget under two SLA tiers: each trial is
predicted in Dynamo's offline replay, then each tier's best candidates are verified on a real
(mocker) stack with AIPerf. The study folder holds the answer: `best/<tier>/` has a spec for
`dynamo-bench serve`, a launch script and a Kubernetes manifest."""),
    ("parameters", """sweep = "sweeps/quickstart.yaml"   # the base sweep file
model = None          # e.g. "Qwen3-8B" (None: the sweep's)
gpu = None            # e.g. "h100_sxm"
gpus = None           # GPU budget per deployment
workload = None       # a workload file, or None
sla = None            # tier -> SLA, as in a sweep file (None: the sweep's tiers)
trials = None         # exploration trials per SLA tier
fidelity = "replay"   # how trials are explored: replay | live
verify = True         # verify each tier's best candidates live
out = "results/quickstart-notebook\""""),
    ("code", """import dynamo_bench as db
from IPython.display import Image, Markdown, display

spec = db.sweep_from(sweep, model=model, gpu=gpu, gpus=gpus, workload=workload, sla=sla,
                     trials=trials, explore=fidelity, verify=verify)
study = db.tune(spec, out)
display(Markdown(f"Study folder: `{study.folder}`"))"""),
    ("md", "## The answer per SLA tier"),
    ("code", """display(study.answers())"""),
    ("code", """display(Image(filename=str(study.folder / "pareto.png")))"""),
    ("md", "## Every trial"),
    ("code", """cols = ["tier", "kind", "trial", "config", "status", "value", "best_load", "reason"]
study.trials()[cols].sort_values(["tier", "kind", "trial"])"""),
    ("md", "The full report (plots of latency against load, history, importance, prediction "
           "error) is `report.html` in the study folder."),
    ("code", """print(study.folder / "report.html")"""),
]

NOTEBOOKS["agg_vs_disagg"] = [
    ("md", """# Aggregated vs disaggregated serving

The same model, GPU budget and SLA, tuned twice (aggregated only, disaggregated only) for
several input lengths. Disaggregation separates prefill from decode: it pays off when long
prompts would otherwise stall decoding. All in replay (seconds per study)."""),
    ("parameters", """sweep = "sweeps/quickstart.yaml"
model = "Qwen3-32B"
gpu = "h100_sxm"
gpus = 8
isl_values = [512, 2048, 8192]
osl = 256
sla = {"chat": "ttft_ms.p90<=2000,itl_ms.p90<=30"}
trials = 30
fidelity = "replay"
out = "results/agg-vs-disagg\""""),
    ("code", """import matplotlib.pyplot as plt
import pandas as pd
import dynamo_bench as db
from IPython.display import display

tier = next(iter(sla))
rows, fronts = [], {}
for isl in isl_values:
    for mode in ("agg", "disagg"):
        spec = db.sweep_from(sweep, name=f"{mode}-isl{isl}", model=model, gpu=gpu, gpus=gpus,
                             sla=sla, trials=trials, explore=fidelity, verify=False,
                             peer=False, mode=[mode], workload={"isl": {"mean": isl},
                                                    "osl": {"mean": osl}})
        study = db.tune(spec, f"{out}/{mode}-isl{isl}")
        answer = study.best(tier).best
        fronts[isl, mode] = study.pareto(tier)
        rows.append({"isl": isl, "mode": mode,
                     "config": answer.record.config if answer else None,
                     "tok/s per GPU": answer.predicted if answer else 0.0})
table = pd.DataFrame(rows).pivot(index="isl", columns="mode", values="tok/s per GPU")
table["disagg / agg"] = table["disagg"] / table["agg"]
display(pd.DataFrame(rows))
table"""),
    ("code", """fig, axes = plt.subplots(1, len(isl_values), figsize=(5 * len(isl_values), 4),
                         squeeze=False)
for ax, isl in zip(axes[0], isl_values):
    for mode, color in (("agg", "#4c78a8"), ("disagg", "#e45756")):
        f = fronts[isl, mode]
        ax.step(f["output_tok_s_per_user"], f["output_tok_s_per_gpu"], where="post",
                color=color, label=mode)
        ax.scatter(f["output_tok_s_per_user"], f["output_tok_s_per_gpu"], color=color, s=12)
    ax.set_title(f"ISL {isl}")
    ax.set_xlabel("output tok/s per user")
    ax.set_ylabel("output tok/s per GPU")
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
fig.savefig(f"{out}/fronts.png")"""),
    ("code", """better = table[table["disagg / agg"] > 1.0]
print("disaggregation pays off from ISL", better.index.min() if len(better) else "never",
      "in this range")"""),
]

NOTEBOOKS["concurrency_sweep"] = [
    ("md", """# A concurrency sweep of a live stack

Launches one deployment (real Dynamo processes; the mocker here), loads it with AIPerf at
several concurrencies without restarting it, and plots latency and throughput against load."""),
    ("parameters", """deployment = "serving/agg_kv.yaml"
workload = "sweeps/workloads/chat.yaml"
concurrencies = [1, 2, 4, 8]
requests = 32         # per load point
sla = "ttft_ms.p90<=500,itl_ms.p90<=25"
out = "results/concurrency-sweep\""""),
    ("code", """import matplotlib.pyplot as plt
import dynamo_bench as db
from IPython.display import display

spec = db.load_deployment(deployment)
w = db.load_workload(workload).model_copy(update={"request_count": requests})
result = db.bench(spec, w, loads=[("concurrency", c) for c in concurrencies], out=out,
                  sla=db.parse_sla(sla))
table = result.table()
display(table[["concurrency", "ttft_ms_p50", "ttft_ms_p90", "itl_ms_p50", "itl_ms_p90",
               "output_tok_s", "output_tok_s_per_gpu", "output_tok_s_per_user",
               "client_saturated"]])"""),
    ("code", """fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for col, label in (("ttft_ms_p50", "p50"), ("ttft_ms_p90", "p90")):
    axes[0].plot(table["concurrency"], table[col], "-o", label=label)
for col, label in (("itl_ms_p50", "p50"), ("itl_ms_p90", "p90")):
    axes[1].plot(table["concurrency"], table[col], "-o", label=label)
axes[2].plot(table["output_tok_s_per_user"], table["output_tok_s_per_gpu"], "-o")
for c, x, y in zip(table["concurrency"], table["output_tok_s_per_user"],
                   table["output_tok_s_per_gpu"]):
    axes[2].annotate(f"c={c}", (x, y), fontsize=8)
axes[0].set(xlabel="concurrency", ylabel="TTFT (ms)", xscale="log")
axes[1].set(xlabel="concurrency", ylabel="ITL (ms)", xscale="log")
axes[2].set(xlabel="output tok/s per user", ylabel="output tok/s per GPU")
for ax in axes:
    ax.grid(alpha=0.3)
axes[0].legend(); axes[1].legend()
fig.tight_layout()
fig.savefig(f"{out}/curves.png")"""),
]

NOTEBOOKS["profile_calibrate"] = [
    ("md", """# Profile and calibrate

Measures a live worker the way Dynamo's pre-deployment profiler does (TTFT by input length,
decode step time by batch size), fits timing tables to the measurements, and compares them
with the built-in performance model. `timing: <out>/tables.npz` in a deployment spec then runs
the mocker and the replay on the measured tables."""),
    ("parameters", """deployment = "serving/agg.yaml"
isl_points = [256, 1024, 4096]   # prompt lengths for TTFT
batch_points = [1, 8, 24]        # concurrencies for the decode step
contexts = [512, 2048]           # context lengths for the decode step
out = "results/profile-calibrate\""""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np
import dynamo_bench as db
from IPython.display import display

spec = db.load_deployment(deployment)
plan = db.ProfilePlan(isl=isl_points, batches=batch_points, contexts=contexts)
outcome = db.profile(spec, out, plan)
print("fitted tables:", outcome.tables_path)
display(outcome.points())"""),
    ("code", """fitted, built_in = outcome.tables, outcome.baseline_tables
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].plot(built_in["prefill_isl"], built_in["prefill_ttft_ms"], label="built-in model")
axes[0].plot(fitted["prefill_isl"], fitted["prefill_ttft_ms"], label="fitted to measurements")
axes[0].set(xlabel="input tokens", ylabel="prefill time (ms)", xscale="log", yscale="log")
for name, t in (("built-in model", built_in), ("fitted to measurements", fitted)):
    j = int(np.abs(t["decode_context_length"] - contexts[0]).argmin())
    axes[1].plot(t["decode_active_kv_tokens"], t["decode_itl"][:, j], label=name)
axes[1].set(xlabel=f"active KV tokens (context {contexts[0]})", ylabel="decode step (ms)",
            xscale="log")
for ax in axes:
    ax.grid(alpha=0.3); ax.legend()
fig.tight_layout()
fig.savefig(f"{out}/calibration.png")"""),
]

NOTEBOOKS["study_explorer"] = [
    ("md", """# Study explorer

Opens any study folder written by `dynamo-bench tune` (or `db.tune`) and shows what it holds;
nothing is re-run. Point `study_folder` at your study."""),
    ("parameters", """study_folder = "results/quickstart"
tier = None           # None: every tier
out = None            # where to save this notebook's executed copy (default: the study)"""),
    ("code", """import dynamo_bench as db
from IPython.display import Image, display

study = db.load_study(study_folder)
tiers = [tier] if tier else study.tiers
display(study.answers())"""),
    ("code", """for t in tiers:
    trials = study.trials(t)
    print(t, trials.groupby(["kind", "status"]).size().to_dict())
    display(study.pareto(t)[["trial", "config", "load", "ttft_ms_p90", "itl_ms_p90",
                             "output_tok_s_per_gpu", "output_tok_s_per_user"]])"""),
    ("code", """report = study.report()
display(Image(filename=str(study.folder / "pareto.png")))
print("HTML report:", study.folder / "report.html")"""),
]


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        for kind, src in cells:
            if kind == "md":
                nb.cells.append(new_markdown_cell(src))
            else:
                cell = new_code_cell(src)
                if kind == "parameters":
                    cell.metadata["tags"] = ["parameters"]
                nb.cells.append(cell)
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
