"""Typed specs (pydantic), loaded from YAML with one-line, field-named errors. No I/O besides YAML."""

from dynamo_bench.specs.deployment import (
    DeploymentSpec,
    FrontendSpec,
    KvOffload,
    KvRouterSettings,
    RouterSpec,
    WorkerGroup,
)
from dynamo_bench.specs.loading import load_spec, parse_spec, read_yaml
from dynamo_bench.specs.metrics import Metrics
from dynamo_bench.specs.sla import SLA, Constraint, parse_sla
from dynamo_bench.specs.workload import (
    ImageSpec,
    LengthSpec,
    MultiTurnSpec,
    PrefixSpec,
    TraceSpec,
    WorkloadSpec,
)


def load_deployment(path: str) -> DeploymentSpec:
    """Load and validate a deployment spec YAML file (raises `SpecError`)."""
    return load_spec(DeploymentSpec, path)


def load_workload(path: str) -> WorkloadSpec:
    """Load and validate a workload spec YAML file (raises `SpecError`)."""
    return load_spec(WorkloadSpec, path)


__all__ = [
    "SLA", "Constraint", "ImageSpec", "LengthSpec", "Metrics", "MultiTurnSpec", "PrefixSpec",
    "TraceSpec", "WorkloadSpec", "load_workload", "parse_sla",
    "DeploymentSpec", "FrontendSpec", "KvOffload", "KvRouterSettings", "RouterSpec",
    "WorkerGroup", "load_deployment", "load_spec", "parse_spec", "read_yaml",
]
