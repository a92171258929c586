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


def load_deployment(path: str) -> DeploymentSpec:
    """Load and validate a deployment spec YAML file (raises `SpecError`)."""
    return load_spec(DeploymentSpec, path)


__all__ = [
    "DeploymentSpec", "FrontendSpec", "KvOffload", "KvRouterSettings", "RouterSpec",
    "WorkerGroup", "load_deployment", "load_spec", "parse_spec", "read_yaml",
]
