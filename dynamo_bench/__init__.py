"""dynamo-bench: launch, measure and tune NVIDIA Dynamo deployments.

The public API lives in `dynamo_bench.api` and is re-exported here.
"""

from dynamo_bench.api import (
    BenchResult,
    CheckResult,
    bench,
    check_stack,
    external_target,
    k8s_manifest,
    load_deployment,
    load_point,
    load_workload,
    make_model_dir,
    parse_sla,
    serve,
    target_for,
)
from dynamo_bench.errors import (
    DynamoBenchError,
    LaunchError,
    ResourceError,
    SpecError,
    UserError,
)
from dynamo_bench.serving.stack import Stack, WorkerDiedError
from dynamo_bench.specs import SLA, DeploymentSpec, Metrics, WorkerGroup, WorkloadSpec

__all__ = [
    "BenchResult", "bench", "external_target", "load_point", "load_workload", "parse_sla",
    "target_for", "SLA", "WorkloadSpec", "Metrics",
    "CheckResult", "DeploymentSpec", "DynamoBenchError", "LaunchError", "ResourceError",
    "SpecError", "Stack", "UserError", "WorkerDiedError", "WorkerGroup", "check_stack",
    "k8s_manifest", "load_deployment", "make_model_dir", "serve",
]
