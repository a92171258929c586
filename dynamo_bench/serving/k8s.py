"""DeploymentSpec -> DynamoGraphDeployment (`nvidia.com/v1beta1`), the Dynamo operator's resource.

The shape follows the templates the operator's own tooling ships with ai-dynamo
(`dynamo/profiler/templates/dgd/<backend>/{agg,disagg}.yaml`): `spec.components` is a list of
`{name, type, replicas, podTemplate.spec.containers[main]}`; the router mode is the frontend's
`DYN_ROUTER_MODE`; a worker's GPUs are its container's `nvidia.com/gpu` limit (at most one node's
worth, with `multinode.nodeCount` above that); everything else is worker arguments.
"""

from __future__ import annotations

import math
import re
from typing import Any

from dynamo_bench.errors import SpecError

from dynamo_bench.perf.models import catalogue_model
from dynamo_bench.serving.model_dir import resolve_model
from dynamo_bench.serving.commands import frontend_argv, worker_commands
from dynamo_bench.specs.deployment import Backend, DeploymentSpec, Role

DYNAMO_VERSION = "1.6.1"
IMAGES: dict[Backend, str] = {
    "vllm": f"nvcr.io/nvidia/ai-dynamo/vllm-runtime:{DYNAMO_VERSION}",
    "sglang": f"nvcr.io/nvidia/ai-dynamo/sglang-runtime:{DYNAMO_VERSION}",
    "trtllm": f"nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:{DYNAMO_VERSION}",
    "mocker": f"nvcr.io/nvidia/ai-dynamo/dynamo-planner:{DYNAMO_VERSION}",
}
#: Component names as in the operator's templates.
_AGG_NAME: dict[Backend, str] = {"vllm": "worker", "sglang": "decode", "trtllm": "TRTLLMWorker",
                                 "mocker": "worker"}
_TYPE: dict[Role, str] = {"agg": "worker", "prefill": "prefill", "decode": "decode"}
#: Flags that only make sense for a local launch; the operator supplies discovery itself.
_LOCAL_ONLY = {"--discovery-backend", "--request-plane", "--http-host", "--http-port"}
HF_SECRET = "hf-token-secret"
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _strip_local(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in _LOCAL_ONLY:
            skip = True
            continue
        out.append(a)
    return out


def model_reference(spec: DeploymentSpec) -> str:
    """What the cluster should load: the Hugging Face id for catalogue models (the fp8 export for
    `precision: fp8` where one is published), else the path."""
    if catalogue_model(spec.model) is None:
        return spec.model
    return resolve_model(spec.model, simulated=False, precision=spec.precision,
                         backend=spec.backend)


def dgd_manifest(spec: DeploymentSpec, *, image: str | None = None, namespace: str | None = None,
                 gpus_per_node: int = 8) -> dict[str, Any]:
    """The DynamoGraphDeployment for `spec`, as a dict ready for `yaml.safe_dump`.

    Raises `SpecError` for a namespace that is not a Kubernetes name (RFC 1123 label) or an
    image reference with spaces.
    """
    if namespace is not None and not _NAMESPACE_RE.match(namespace):
        raise SpecError("--namespace", f"{namespace!r} is not a Kubernetes namespace: lowercase "
                        "letters, digits and '-', at most 63, starting and ending with a letter "
                        "or digit")
    if image is not None and (not image or any(c.isspace() for c in image)):
        raise SpecError("--image", f"{image!r} is not an image reference (e.g. "
                        "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1)")
    img = image or IMAGES[spec.backend]
    fe_args = _strip_local(frontend_argv(spec, 8000, python="python3")[1:])
    router_mode = fe_args[fe_args.index("--router-mode") + 1]
    fe_args = _strip_local_router(fe_args)
    components: list[dict[str, Any]] = [{
        "name": "Frontend",
        "type": "frontend",
        "replicas": 1,
        "podTemplate": {"spec": {"containers": [{
            "name": "main", "image": img, "command": ["python3"], "args": fe_args,
            "env": [{"name": "DYN_ROUTER_MODE", "value": router_mode}],
            "envFrom": [{"secretRef": {"name": HF_SECRET}}],
        }]}},
    }]
    model = model_reference(spec)
    seen: set[Role] = set()
    for cmd in worker_commands(spec, model, python="python3"):
        if cmd.role in seen:
            continue
        seen.add(cmd.role)
        group = spec.workers[cmd.role]
        args = [a.replace("${KV_EVENTS_PORT}", "20080") for a in _strip_local(cmd.argv[3:])]
        container: dict[str, Any] = {
            "name": "main", "image": img, "command": cmd.argv[:3], "args": args,
            "envFrom": [{"secretRef": {"name": HF_SECRET}}],
            "workingDir": "/workspace",
        }
        component: dict[str, Any] = {
            "name": _AGG_NAME[spec.backend] if cmd.role == "agg" else cmd.role,
            "type": _TYPE[cmd.role],
            "replicas": group.replicas,
            "podTemplate": {"spec": {"containers": [container]}},
        }
        if spec.backend != "mocker":
            per_pod = min(group.gpus_per_worker, gpus_per_node)
            container["resources"] = {"limits": {"nvidia.com/gpu": str(per_pod)},
                                      "requests": {"ephemeral-storage": "2Gi"}}
            if group.gpus_per_worker > gpus_per_node:
                component["multinode"] = {
                    "nodeCount": math.ceil(group.gpus_per_worker / gpus_per_node)}
        components.append(component)
    metadata: dict[str, Any] = {"name": spec.name,
                                "labels": {"app.kubernetes.io/managed-by": "dynamo-bench"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "nvidia.com/v1beta1", "kind": "DynamoGraphDeployment",
            "metadata": metadata, "spec": {"components": components}}


def _strip_local_router(args: list[str]) -> list[str]:
    """Frontend args without `--router-mode` (set through DYN_ROUTER_MODE, as the templates do)."""
    i = args.index("--router-mode")
    return args[:i] + args[i + 2:]
