"""dynamo-bench: launch, measure and tune NVIDIA Dynamo deployments.

The public API lives in `dynamo_bench.api` and is re-exported here.
"""

from dynamo_bench.api import (
    CheckResult,
    check_stack,
    k8s_manifest,
    load_deployment,
    make_model_dir,
    serve,
)
from dynamo_bench.errors import (
    DynamoBenchError,
    LaunchError,
    ResourceError,
    SpecError,
    UserError,
)
from dynamo_bench.serving.stack import Stack, WorkerDiedError
from dynamo_bench.specs import DeploymentSpec, WorkerGroup

__all__ = [
    "CheckResult", "DeploymentSpec", "DynamoBenchError", "LaunchError", "ResourceError",
    "SpecError", "Stack", "UserError", "WorkerDiedError", "WorkerGroup", "check_stack",
    "k8s_manifest", "load_deployment", "make_model_dir", "serve",
]
