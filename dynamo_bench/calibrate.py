"""Calibrating the roofline, and scoring any provider, against outside measurements.

    uv run python -m dynamo_bench.calibrate grid   # re-sample AIConfigurator's database (slow)
    uv run python -m dynamo_bench.calibrate fit    # fit, write perf/data/calibration.json

Two kinds of reference data, both versioned files in `perf/data/`:

- `aic_grid.csv`: AIConfigurator's predictions (its database of measured kernel timings) for
  prefill at several input lengths and decode at several batch sizes and contexts, over models,
  GPUs, engines, precisions and TP sizes (`grid`);
- `published.csv`: measurements published by others (TensorRT-LLM's performance pages,
  MLPerf, NIM, lmdeploy, Qwen; citations in `published_sources.md`) of low-load TTFT, low-load
  ITL and maximum throughput. Each row is in the `fit` or the `holdout` half (a hash of its id,
  balanced within each source and class); the fit never sees the holdout half, which is what
  `tests/benchmarks/bench_accuracy.py` reports on.

The fit chooses, per GPU generation, precision and engine, the roofline constants
(perf/calibration.py) that minimise the squared log error over that group's AIConfigurator grid
points and its published `fit` rows (each kind weighted to count as much as the other), within
physical bounds. Published rows are predicted the way the tool predicts anything: low-load
TTFT and ITL from the worker's timing tables, maximum throughput from the offline replay of
the published configuration at saturation (the fit uses a closed-form steady state for speed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynamo_bench.perf.arch import ModelArch
from dynamo_bench.perf.calibration import DATA, PRIOR, Calibration, Efficiency, calibration
from dynamo_bench.perf.gpus import GPUS
from dynamo_bench.perf.memory import memory_fit
from dynamo_bench.perf.models import catalogue_model
from dynamo_bench.perf.roofline import Hardware, decode_step_ms, prefill_ms

DATA_DIR = DATA.parent
PUBLISHED = DATA_DIR / "published.csv"
AIC_GRID = DATA_DIR / "aic_grid.csv"
CLASSES = ("ttft_low_load", "itl_low_load", "max_throughput")
#: Engines the published rows name -> the engine whose constants predict them.
ENGINE_OF = {"trtllm": "trtllm", "vllm": "vllm", "sglang": "sglang", "lmdeploy": "trtllm",
             "other": "trtllm"}
PRECISION_OF = {"fp16": "bf16", "bf16": "bf16", "fp8": "fp8"}
#: Sources that time a model outside any serving engine (their rows are kept, not scored).
NOT_SERVING = ("PyTorch torchao", "bitsandbytes")


@dataclass(frozen=True)
class Row:
    """One published measurement, resolved to what the tool can predict.

    `excluded` says why a row is left out of every score (a precision or model the tool does
    not model, missing conditions), None when it is used. `split` is "fit" or "holdout".
    """

    id: str
    source: str
    model: str
    gpu: str
    tp: int
    pp: int
    precision: str
    engine: str
    metric: str
    isl: int
    osl: int
    batch: int | None
    value: float
    per_gpu: bool
    n_gpus: int
    split: str
    excluded: str | None

    @property
    def static_batch(self) -> bool:
        """Rows measured with a fixed batch (TensorRT-LLM's v0.9 gptSessionBenchmark)."""
        return self.metric == "max_throughput" and self.batch is not None


def _int(s: str) -> int | None:
    try:
        return int(float(s))
    except ValueError:
        return None


def _split(rows: list[dict[str, str]]) -> dict[str, str]:
    """Alternate fit / holdout within each (source, metric), in the order of a hash of the
    row id: a balanced split that does not depend on the file's order."""
    out: dict[str, str] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["metric"]), []).append(r["id"])
    for ids in groups.values():
        for i, rid in enumerate(sorted(ids, key=lambda x: hashlib.sha256(x.encode())
                                       .hexdigest())):
            out[rid] = "fit" if i % 2 == 0 else "holdout"
    return out


def published_rows(path: Path = PUBLISHED) -> list[Row]:
    """Every published row, with its split and, where it cannot be predicted, why not."""
    with open(path, newline="") as f:
        raw = list(csv.DictReader(f))
    split = _split(raw)
    out = []
    for r in raw:
        excluded = None
        entry = catalogue_model(r["model"])
        precision = PRECISION_OF.get(r["precision"])
        tp = _int(r["tp"]) or _int(r["n_gpus"]) or 1
        isl, osl = _int(r["isl"]), _int(r["osl"])
        if r["source"].startswith(NOT_SERVING):
            excluded = "not a serving engine (a single-request script or plain transformers)"
        if entry is None:
            excluded = f"model {r['model']} is not in the catalogue"
        elif precision is None:
            excluded = f"precision {r['precision'] or 'unstated'} is not modelled"
        elif r["gpu"] not in GPUS:
            excluded = f"GPU {r['gpu']} is not in the catalogue"
        elif isl is None or osl is None:
            excluded = "input or output length not published"
        elif not r["tp"] and r["metric"] == "max_throughput" and (_int(r["n_gpus"]) or 1) > 1:
            excluded = "parallelism not published"
        out.append(Row(
            id=r["id"], source=r["source"], model=entry.name if entry else r["model"],
            gpu=r["gpu"], tp=tp, pp=_int(r["pp"]) or 1, precision=precision or "",
            engine=ENGINE_OF.get(r["engine"], "trtllm"), metric=r["metric"], isl=isl or 0,
            osl=osl or 0, batch=_int(r["batch"]) or _int(r["concurrency"]),
            value=float(r["value"]), per_gpu=r["unit"].endswith("/gpu"),
            n_gpus=_int(r["n_gpus"]) or tp, split=split[r["id"]], excluded=excluded))
    return out


def hardware(row: Row, constants: Calibration | None = None) -> Hardware:
    return Hardware(GPUS[row.gpu], tp=row.tp, pp=row.pp, precision=row.precision,  # type: ignore[arg-type]
                    backend=row.engine, constants=constants)


def arch(model: str) -> ModelArch:
    return ModelArch.of(model)


def low_load_context(row: Row) -> float:
    """The mean context of a batch-1 decode: the prompt plus half the output."""
    return max(row.isl, 1) + max(row.osl, 2) / 2


# -- the closed-form steady state the fit uses for maximum throughput -------------------------

def max_batch(row: Row, a: ModelArch, hw: Hardware) -> int:
    """Sequences resident at saturation: the published batch, else as many as the KV cache
    holds at full length (capped at 2048, TensorRT-LLM's default maximum batch)."""
    fit = memory_fit(a, hw)
    by_kv = max(1, fit.kv_tokens // max(row.isl + row.osl, 1))
    return min(row.batch, by_kv) if row.batch else min(2048, by_kv)


def closed_form_throughput(row: Row, hw: Hardware) -> float:
    """Output tokens/s of one worker at saturation, in closed form: static batches prefill
    together then decode together; in-flight batches mix each step's decode with the prefill
    of the requests that replace the finished ones."""
    a = arch(row.model)
    b = max_batch(row, a, hw)
    ctx = row.isl + row.osl / 2
    if row.static_batch:
        total = prefill_ms(a, hw, b * row.isl) + row.osl * decode_step_ms(a, hw, b, ctx)
        return b * row.osl * 1000.0 / total
    step = decode_step_ms(a, hw, b, ctx)
    # the prompt tokens that enter per step, at the prefill's own per-token cost
    per_token = (prefill_ms(a, hw, 8192) - prefill_ms(a, hw, 0)) / 8192
    step += b * row.isl / max(row.osl, 1) * per_token
    return b * 1000.0 / step


def published_value(row: Row, per_worker_tok_s: float) -> float:
    """A predicted per-worker throughput in the row's own unit."""
    return per_worker_tok_s / (row.tp * row.pp) if row.per_gpu else \
        per_worker_tok_s * row.n_gpus / (row.tp * row.pp)


def roofline_prediction(row: Row, constants: Calibration | None = None) -> float:
    """The calibrated roofline's prediction of a row in closed form (the fit's objective)."""
    hw = hardware(row, constants)
    a = arch(row.model)
    if row.metric == "ttft_low_load":
        return prefill_ms(a, hw, row.isl)
    if row.metric == "itl_low_load":
        return decode_step_ms(a, hw, 1, low_load_context(row))
    return published_value(row, closed_form_throughput(row, hw))


# -- predicting a row the way the tool predicts anything ---------------------------------------

def predict(row: Row, timing: str = "auto") -> tuple[float | None, str]:
    """(prediction in the row's unit, the provider that made it) with the provider chain
    `timing` (auto, roofline or aiconfigurator); (None, reason) when it does not cover the row.

    Low-load TTFT and ITL are read from the worker's timing tables (what the replay runs on);
    maximum throughput is the offline replay of the published configuration at saturation.
    """
    from dynamo_bench.perf.providers import NotCoveredError, WorkerQuery, default_chain
    from dynamo_bench.perf.providers import tables_from_chain

    a = arch(row.model)
    hw = hardware(row)
    fit = memory_fit(a, hw)
    if not fit.fits:
        return None, f"does not fit: {fit.reason}"
    q = WorkerQuery(row.model, a, hw, kv_tokens=fit.kv_tokens,
                    max_context=min(131072, max(fit.kv_tokens, 1024)))
    try:
        tables = tables_from_chain(q, default_chain(timing), num_gpu_blocks=fit.num_gpu_blocks,
                                   block_size=64)
    except NotCoveredError as e:
        return None, str(e)
    provider = str(tables.provenance["provider"])
    look = tables.lookup()
    if row.metric == "ttft_low_load":
        return look.prefill_ms(row.isl), provider
    if row.metric == "itl_low_load":
        return look.decode_ms(1, low_load_context(row)), provider
    return published_value(row, replay_throughput(row, timing)), provider


def replay_throughput(row: Row, timing: str) -> float:
    """Output tokens/s of one worker of the row's configuration at saturation, replayed."""
    from dynamo_bench.replay import replay
    from dynamo_bench.specs import DeploymentSpec, LengthSpec, WorkloadSpec, parse_spec

    b = max_batch(row, arch(row.model), hardware(row))
    spec = parse_spec(DeploymentSpec, {
        "model": row.model, "gpu": row.gpu, "backend": row.engine, "precision": row.precision,
        "timing": timing, "workers": {"agg": {
            "tp": row.tp, "pp": row.pp, "max_num_seqs": b,
            "max_num_batched_tokens": max(8192, b)}}})
    workload = WorkloadSpec(isl=LengthSpec(mean=max(row.isl, 1)),
                            osl=LengthSpec(mean=max(row.osl, 1)), concurrency=b,
                            request_count=max(4 * b, 64))
    metrics, _ = replay(spec, workload)
    return float(metrics.output_tok_s or 0.0)


# -- AIConfigurator's grid ---------------------------------------------------------------------

GRID_MODELS = ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-8B", "Qwen3-32B", "Qwen3-30B-A3B",
               "Mixtral-8x7B")
GRID_GPUS = ("h100_sxm", "h200_sxm", "a100_80gb", "b200", "l40s")
GRID_PREFILL = (128, 512, 2048, 8192)
GRID_DECODE = ((1, 1024), (8, 1024), (32, 2048), (128, 2048), (256, 1024))
GRID_FIELDS = ("model", "gpu", "engine", "precision", "tp", "kind", "tokens", "batch",
               "context", "ms")


def sample_grid(out: Path = AIC_GRID) -> int:
    """Sample AIConfigurator's database over the grid; write `aic_grid.csv`; return the rows."""
    from dynamo_bench.perf.aic import AICUnavailable, AICWorker, arch_and_config

    rows = []
    for model in GRID_MODELS:
        a, config = arch_and_config(model)
        for gpu in GRID_GPUS:
            for engine in ("vllm", "sglang", "trtllm"):
                for precision in ("bf16", "fp8"):
                    if precision == "fp8" and GPUS[gpu].fp8_tflops is None:
                        continue
                    for tp in (1, 2, 4, 8):
                        hw = Hardware(GPUS[gpu], tp=tp, precision=precision,  # type: ignore[arg-type]
                                      backend=engine)
                        if not memory_fit(a, hw).fits:
                            continue
                        try:
                            w = AICWorker(a, config, gpu, engine, tp=tp, precision=precision)
                        except AICUnavailable as e:
                            print(f"skip: {e}", file=sys.stderr)
                            continue
                        base = {"model": model, "gpu": gpu, "engine": engine,
                                "precision": precision, "tp": tp}
                        for n in GRID_PREFILL:
                            rows.append({**base, "kind": "prefill", "tokens": n, "batch": 1,
                                         "context": n, "ms": round(w.prefill_ms(n), 4)})
                        for b, c in GRID_DECODE:
                            rows.append({**base, "kind": "decode", "tokens": b, "batch": b,
                                         "context": c, "ms": round(w.decode_ms(b, c), 4)})
                        print(f"{model} {gpu} {engine} {precision} tp{tp}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=GRID_FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    return len(rows)


@dataclass(frozen=True)
class GridPoint:
    model: str
    gpu: str
    engine: str
    precision: str
    tp: int
    kind: str
    tokens: int
    batch: int
    context: int
    ms: float


def grid_points(path: Path = AIC_GRID) -> list[GridPoint]:
    with open(path, newline="") as f:
        return [GridPoint(r["model"], r["gpu"], r["engine"], r["precision"], int(r["tp"]),
                          r["kind"], int(r["tokens"]), int(r["batch"]), int(r["context"]),
                          float(r["ms"])) for r in csv.DictReader(f)]


def grid_prediction(p: GridPoint, constants: Calibration | None = None) -> float:
    hw = Hardware(GPUS[p.gpu], tp=p.tp, precision=p.precision, backend=p.engine,  # type: ignore[arg-type]
                  constants=constants)
    a = arch(p.model)
    if p.kind == "prefill":
        # AIConfigurator's prefill time has no per-request cost: compare like with like
        return prefill_ms(a, hw, p.tokens) - hw.eff.request_ms
    return decode_step_ms(a, hw, p.batch, p.context)


# -- the fit -----------------------------------------------------------------------------------

_NAMES = ("compute", "memory", "prefill_layer_us", "decode_layer_us", "step_ms", "request_ms",
          "allreduce_us", "attention", "link", "moe")
_LOW = np.array([0.15, 0.30, 0.0, 0.0, 0.0, 0.0, 2.0, 0.05, 0.02, 0.1])
_HIGH = np.array([0.95, 0.95, 300.0, 100.0, 10.0, 40.0, 60.0, 0.95, 0.95, 1.0])


def group_key(gpu: str, precision: str, engine: str) -> str:
    return f"{GPUS[gpu].generation}/{precision}/{engine}"


def fit(points: list[GridPoint], rows: list[Row], *, log: bool = True) -> Calibration:
    """Fit one set of constants per (generation, precision, engine) group (module docstring)."""
    from scipy.optimize import least_squares

    fit_rows = [r for r in rows if r.excluded is None and r.split == "fit"]
    groups = sorted({group_key(p.gpu, p.precision, p.engine) for p in points}
                    | {group_key(r.gpu, r.precision, r.engine) for r in fit_rows})
    entries: dict[str, Efficiency] = {}
    for key in groups:
        gp = [p for p in points if group_key(p.gpu, p.precision, p.engine) == key]
        gr = [r for r in fit_rows if group_key(r.gpu, r.precision, r.engine) == key]
        x0 = np.array([getattr(PRIOR, n) for n in _NAMES])

        def residuals(x: np.ndarray) -> np.ndarray:
            eff = Efficiency(**dict(zip(_NAMES, map(float, x))))
            cal = Calibration("fitting", {key: eff}, {})
            out = []
            if gp:
                w = math.sqrt(1.0 / len(gp))
                out += [w * math.log(grid_prediction(p, cal) / p.ms) for p in gp]
            if gr:
                w = math.sqrt(1.0 / len(gr))
                out += [w * math.log(roofline_prediction(r, cal) / r.value) for r in gr]
            # a weak pull towards the prior keeps unidentified constants physical
            out += list(0.02 * (x - x0) / (_HIGH - _LOW))
            return np.array(out)

        res = least_squares(residuals, x0, bounds=(_LOW, _HIGH), x_scale=_HIGH - _LOW)
        entries[key] = Efficiency(**dict(zip(_NAMES, map(float, res.x))))
        if log:
            cal = Calibration("fitted", {key: entries[key]}, {})
            g_err = np.median([abs(grid_prediction(p, cal) / p.ms - 1) for p in gp]) if gp \
                else float("nan")
            r_err = np.median([abs(roofline_prediction(r, cal) / r.value - 1) for r in gr]) \
                if gr else float("nan")
            print(f"{key:<22} grid {len(gp):>4} ({g_err * 100:4.1f}%)  published {len(gr):>3} "
                  f"({r_err * 100:4.1f}%)  "
                  + " ".join(f"{n}={v:.3g}" for n, v in zip(_NAMES, res.x)), file=sys.stderr)
    version = "fit-" + hashlib.sha256(repr(sorted((k, v.to_dict().items()) for k, v in
                                                  entries.items())).encode()
                                      ).hexdigest()[:10]
    return Calibration(version, entries, {
        "aic_grid_points": len(points), "published_fit_rows": len(fit_rows),
        "published_file": PUBLISHED.name, "grid_file": AIC_GRID.name})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dynamo_bench.calibrate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("grid", "fit"))
    args = parser.parse_args(argv)
    if args.what == "grid":
        n = sample_grid()
        print(f"wrote {AIC_GRID} ({n} points)")
        return
    cal = fit(grid_points(), published_rows())
    DATA.write_text(cal.to_json())
    calibration.cache_clear()
    print(f"wrote {DATA} ({cal.version}, {len(cal.entries)} groups)")


if __name__ == "__main__":
    main()
