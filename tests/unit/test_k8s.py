"""DynamoGraphDeployment manifests, checked with the operator tooling shipped in ai-dynamo:
its DGD model (`dynamo.profiler.utils.config.Config`), its read-back helpers (worker by type,
TP x PP from the worker args, GPU limits) and its templates (`profiler/templates/dgd`)."""

from __future__ import annotations

import pathlib
import sys
import types
from pathlib import Path

import pytest
import yaml

from dynamo_bench.serving.k8s import IMAGES, dgd_manifest
from dynamo_bench.specs import DeploymentSpec, load_deployment, parse_spec

REPO = Path(__file__).resolve().parents[2]
SPECS = ["agg.yaml", "agg_kv.yaml", "disagg_1p1d.yaml", "disagg_2p1d.yaml", "vllm_agg.yaml",
         "vllm_disagg.yaml", "sglang_agg.yaml", "sglang_disagg.yaml", "trtllm_agg.yaml",
         "trtllm_disagg.yaml"]


@pytest.fixture(scope="module")
def dynamo_profiler():
    """Dynamo's profiler utils. `dynamo.planner/__init__` pulls in the AI simulator (not installed
    here), so the planner package is registered bare and only the modules needed are loaded."""
    import dynamo

    saved = {k: v for k, v in sys.modules.items() if k.startswith("dynamo.planner")}
    if "dynamo.planner" not in sys.modules:
        bare = types.ModuleType("dynamo.planner")
        bare.__path__ = [str(pathlib.Path(list(dynamo.__path__)[0]) / "planner")]
        sys.modules["dynamo.planner"] = bare
    from dynamo.planner.config.defaults import SubComponentType
    from dynamo.profiler.utils import config

    yield config, SubComponentType
    for k in [k for k in sys.modules if k.startswith("dynamo.planner")]:
        if k not in saved:
            del sys.modules[k]


def template(backend: str, mode: str) -> dict:
    import dynamo

    root = pathlib.Path(list(dynamo.__path__)[0]) / "profiler" / "templates" / "dgd"
    return yaml.safe_load((root / backend / f"{mode}.yaml").read_text())


@pytest.mark.parametrize("name", SPECS)
def test_manifest_validates_and_reads_back(name: str, dynamo_profiler) -> None:
    config, Sub = dynamo_profiler
    spec = load_deployment(str(REPO / "serving" / name))
    manifest = yaml.safe_load(yaml.safe_dump(dgd_manifest(spec)))  # what a file round-trip gives
    cfg = config.Config.model_validate(manifest)
    assert manifest["apiVersion"] == "nvidia.com/v1beta1"
    assert manifest["kind"] == "DynamoGraphDeployment"
    fe = config.get_component_by_name(cfg, "Frontend")
    env = {e["name"]: e["value"] for e in config.get_main_container(fe).env}
    assert env["DYN_ROUTER_MODE"] == spec.router.mode
    backend = spec.backend if spec.backend != "mocker" else "vllm"
    roles = {"agg": Sub.DECODE} if spec.mode == "agg" else {"prefill": Sub.PREFILL,
                                                            "decode": Sub.DECODE}
    for role, sub in roles.items():
        group = spec.workers[role]
        worker = config.get_worker_component_from_config(cfg, backend=backend,
                                                         sub_component_type=sub)
        assert worker.replicas == group.replicas
        container = config.get_main_container(worker)
        assert container.command == ["python3", "-m", f"dynamo.{spec.backend}"]
        assert container.image == IMAGES[spec.backend]
        if spec.backend == "mocker":
            assert not (container.resources or {}).get("limits")
            continue
        assert config._get_per_instance_gpus(worker) == group.tp * group.pp
        limit = int(container.resources["limits"]["nvidia.com/gpu"])
        assert limit == min(group.tp * group.pp, 8)
        args = config.validate_and_get_worker_args(worker, spec.backend)
        assert "--discovery-backend" not in args  # the operator provides discovery


@pytest.mark.parametrize(("backend", "mode"), [("vllm", "agg"), ("vllm", "disagg"),
                                               ("sglang", "agg"), ("sglang", "disagg"),
                                               ("trtllm", "agg"), ("trtllm", "disagg"),
                                               ("mocker", "disagg")])
def test_components_match_the_operator_templates(backend: str, mode: str) -> None:
    """Same component names and types, same container shape as Dynamo's own templates."""
    ours = dgd_manifest(load_deployment(str(REPO / "serving" / (
        f"{backend}_{mode}.yaml" if backend != "mocker" else "disagg_1p1d.yaml"))))
    theirs = template(backend, mode)
    assert ours["apiVersion"] == theirs["apiVersion"]
    assert {(c["name"], c["type"]) for c in ours["spec"]["components"]} == \
        {(c["name"], c["type"]) for c in theirs["spec"]["components"]}
    for mine, ref in zip(sorted(ours["spec"]["components"], key=lambda c: c["name"]),
                         sorted(theirs["spec"]["components"], key=lambda c: c["name"])):
        mc = mine["podTemplate"]["spec"]["containers"][0]
        rc = ref["podTemplate"]["spec"]["containers"][0]
        assert mc["name"] == rc["name"] == "main"
        assert mc["command"] == rc["command"]
        assert mc["image"].rsplit(":", 1)[0] == rc["image"].rsplit(":", 1)[0]
        assert ("resources" in mc) == ("resources" in rc)


def test_multinode_worker_gets_node_count(dynamo_profiler) -> None:
    config, Sub = dynamo_profiler
    spec = parse_spec(DeploymentSpec, {"name": "big", "model": "Llama-3.1-405B",
                                       "backend": "vllm", "workers": {"agg": {"tp": 8, "pp": 2}}})
    manifest = dgd_manifest(spec)
    worker = manifest["spec"]["components"][1]
    assert worker["multinode"] == {"nodeCount": 2}
    assert worker["podTemplate"]["spec"]["containers"][0]["resources"]["limits"] == \
        {"nvidia.com/gpu": "8"}
    cfg = config.Config.model_validate(manifest)
    w = config.get_worker_component_from_config(cfg, backend="vllm", sub_component_type=Sub.DECODE)
    assert config._get_per_instance_gpus(w) == 16


def test_catalogue_model_becomes_hf_id() -> None:
    manifest = dgd_manifest(load_deployment(str(REPO / "serving" / "vllm_disagg.yaml")))
    args = manifest["spec"]["components"][1]["podTemplate"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "meta-llama/Llama-3.1-70B-Instruct"
