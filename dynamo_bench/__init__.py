"""dynamo-bench: launch, measure and tune NVIDIA Dynamo deployments.

The public API (the calls the CLI and the notebooks make) lives in `dynamo_bench.api` and is
re-exported here:

    import dynamo_bench as db
    study = db.tune("sweeps/quickstart.yaml", "results/quickstart")
    study.answers()                 # the answer per SLA tier (DataFrame)

Specs: `load_deployment`, `load_workload`, `load_sweep`, `sweep_from`, `parse_sla`.
Serving: `serve` (a `Stack` context manager), `check_stack`, `k8s_manifest`, `make_model_dir`.
Measuring: `bench`, `load_point`, `target_for`, `external_target`.
Tuning: `tune`, `load_study` (a `TuningStudy`: trials, points, pareto, best, answers, report),
`write_report`, `pareto_front`.
Performance model: `predict`, `write_tables`, `profile` (+ `ProfilePlan`).
"""

# Imported on first use, so that `import dynamo_bench` (and the CLI's --help) stays fast:
# the API pulls in pandas, optuna, matplotlib and Dynamo.
_HOMES = {
    "dynamo_bench.api": (
        "BenchResult", "CheckResult", "PerfReport", "ProfileOutcome", "ProfilePlan",
        "TuningStudy", "bench", "check_stack", "external_target", "k8s_manifest",
        "load_deployment", "load_point", "load_study", "load_sweep", "load_workload",
        "make_model_dir", "parse_sla", "predict", "profile", "serve", "sweep_from",
        "target_for", "tune", "write_report", "write_tables"),
    "dynamo_bench.errors": ("DynamoBenchError", "LaunchError", "ResourceError", "SpecError",
                            "UserError"),
    "dynamo_bench.report.pareto": ("pareto_front",),
    "dynamo_bench.serving.stack": ("Stack", "WorkerDiedError"),
    "dynamo_bench.specs": ("SLA", "DeploymentSpec", "Metrics", "WorkerGroup", "WorkloadSpec"),
    "dynamo_bench.tune.sweep": ("SweepSpec",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    # specs
    "DeploymentSpec", "WorkerGroup", "WorkloadSpec", "SweepSpec", "SLA", "Metrics",
    "load_deployment", "load_workload", "load_sweep", "sweep_from", "parse_sla",
    # serving
    "Stack", "serve", "check_stack", "CheckResult", "k8s_manifest", "make_model_dir",
    # measuring
    "bench", "BenchResult", "load_point", "target_for", "external_target",
    # tuning and reports
    "tune", "load_study", "TuningStudy", "write_report", "pareto_front",
    # performance model
    "predict", "PerfReport", "write_tables", "profile", "ProfilePlan", "ProfileOutcome",
    # errors
    "DynamoBenchError", "UserError", "SpecError", "ResourceError", "LaunchError",
    "WorkerDiedError",
]


# `tune` is both a function of the API and a subpackage. Importing a subpackage binds its name
# on this package, which would hide `__getattr__`: load it now and unbind the name, so that
# `dynamo_bench.tune` is always the function (as `import dynamo_bench.tune.tuner` still works).
import importlib as _importlib  # noqa: E402

_importlib.import_module("dynamo_bench.tune")
del globals()["tune"]


def __getattr__(name: str) -> object:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'dynamo_bench' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
