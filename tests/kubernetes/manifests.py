"""The Kubernetes manifests as kubectl's kustomize builds them, and strict schema checks of each
object: core kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields fail), the Prometheus Operator's and KEDA's kinds against their CRD models (cloudcoil), which
ignore unknown fields by themselves, so an object must also come back unchanged from the model."""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring
from cloudcoil.models.prometheus_operator import v1alpha1 as monitoring_alpha

from tests.support.procs import REPO, tool

KUSTOMIZE_ROOT = REPO / "deploy" / "kubernetes"
BASE = KUSTOMIZE_ROOT / "base"
KEDA = KUSTOMIZE_ROOT / "keda"
DEMO = KUSTOMIZE_ROOT / "examples" / "demo"
BUILDS = {"base": BASE, "keda": KEDA, "demo": DEMO}

# The oldest Kubernetes KEDA 2.16 supports, and the newest schemas kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

CRD_MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): monitoring_alpha.AlertmanagerConfig,
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
}


class _Loader(yaml.SafeLoader):
    """kustomize prints `matchType: =` unquoted: a string for Kubernetes (and YAML 1.2), PyYAML's
    YAML 1.1 `value` tag otherwise."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@functools.cache
def _built(directory: Path) -> str:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(REPO)} failed: {result.stderr}"
    return result.stdout


@functools.cache
def _parsed(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(_built(directory), Loader=_Loader) if doc]


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIR` prints (a fresh copy each call)."""
    return copy.deepcopy(_parsed(directory))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def _differences(given: Any, kept: Any, path: str) -> list[str]:
    """Where `kept` (the object as the model understood it) differs from `given`."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = [f"{path}.{k}: unknown field" for k in given.keys() - kept.keys()]
        for k in given.keys() & kept.keys():
            out += _differences(given[k], kept[k], f"{path}.{k}")
        return out
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [d for i, (g, k) in enumerate(zip(given, kept, strict=True)) for d in _differences(g, k, f"{path}[{i}]")]
    if given != kept or type(given) is not type(kept):
        return [f"{path}: {given!r} is not of the schema's type (read as {kept!r})"]
    return []


def _strict_model(model: type[pydantic.BaseModel], doc: dict[str, Any], where: str) -> list[str]:
    try:
        kept = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    except pydantic.ValidationError as exc:
        return [f"{where}: {' / '.join(e['msg'] + ' at ' + '.'.join(map(str, e['loc'])) for e in exc.errors())}"]
    return _differences(doc, kept, where)


def _child_routes(route: dict[str, Any], where: str) -> list[str]:
    """AlertmanagerConfig's child routes are free-form JSON in the CRD; the operator reads each as
    a Route: check them against that model, recursively."""
    problems = []
    for i, child in enumerate(route.get("routes") or []):
        child_where = f"{where}.routes[{i}]"
        problems += _strict_model(
            monitoring_alpha.Route, {k: v for k, v in child.items() if k != "routes"}, child_where
        )
        problems += _child_routes(child, child_where)
    return problems


def validate(obj: dict[str, Any]) -> list[str]:
    """Every schema problem of one object (empty: valid), each as `Kind/name.path: what`."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    model = CRD_MODELS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if model is not None:
        problems = _strict_model(model, obj, where)
        if obj["kind"] == "AlertmanagerConfig":
            problems += _child_routes(obj["spec"]["route"], f"{where}.spec.route")
        return problems
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where} (Kubernetes {version}): {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: no schema ({exc})")
    return problems


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> pod spec of every object that makes pods."""
    out = {}
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            out[f"CronJob/{obj['metadata']['name']}"] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            out[f"Pod/{obj['metadata']['name']}"] = obj["spec"]
    return out
