"""deploy/kubernetes builds with kubectl's kustomize, every object passes its schema strictly
(an unknown or misspelled field fails), every pod meets Pod Security "restricted", and the names,
ports and queues are the ones the rest of the stack uses. No cluster runs here: see the README."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from celery_queue_exporter.config import OPTIONS
from prometheus import generate as alerting
from prometheus.file_sd import DEFAULT_BROKER
from prometheus.generate import catalog
from tests.kubernetes.manifests import BUILDS, DEMO, build, find, pod_specs, validate
from tests.support.procs import REPO
from workers.routing import WORKER_QUEUES

QUEUES = WORKER_QUEUES.split(",")


@pytest.mark.parametrize("name", BUILDS)
def test_builds_and_every_object_validates_strictly(name: str) -> None:
    objects = build(BUILDS[name])
    assert objects, f"{name} built nothing"
    problems = [p for obj in objects for p in validate(obj)]
    assert not problems, "\n".join(problems)


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set obj[a][b][0][c] for the path `a.b.0.c`."""
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[int(key)] if key.isdigit() else obj[key]  # type: ignore[index]
    obj[last] = value


# One misspelled or unknown field per kind, at the depth where mistakes happen.
MISTAKES = [
    ("Deployment", "celery-queue-exporter", "spec.template.spec.containers.0.imagePullPolicyy", "Always"),
    ("Deployment", "celery-worker", "spec.template.spec.securityContext.runAsNonroot", True),
    ("Service", "celery-flower", "spec.ports.0.targetPorts", "http"),
    ("NetworkPolicy", "celery-metrics-from-prometheus", "spec.ingress.0.form", []),
    ("ConfigMap", "grafana-dashboard-celery-overview", "metadata.label", {}),
    ("Namespace", "celery", "metadata.labelz", {}),
    ("ServiceMonitor", "celery-queue-exporter", "spec.endpoints.0.scrapeTimout", "10s"),
    ("ServiceMonitor", "celery-flower", "spec.endpoints.0.interval", 15),
    ("PrometheusRule", "celery", "spec.groups.0.rules.0.expresion", "up"),
    ("AlertmanagerConfig", "celery", "spec.inhibitRules.0.sourceMatchers", []),
    ("AlertmanagerConfig", "celery", "spec.route.routes.0.repeat_interval", "1h"),
    ("ScaledObject", "celery-worker", "spec.advanced.horizontalPodAutoscalerConfig.behaviour", {}),
    ("ScaledObject", "celery-worker", "spec.minReplicaCount", "0"),
]


@pytest.mark.parametrize(("kind", "name", "path", "value"), MISTAKES, ids=[f"{m[0]}.{m[2]}" for m in MISTAKES])
def test_strict_validation_rejects_a_mistake(kind: str, name: str, path: str, value: Any) -> None:
    (obj,) = find(build(DEMO), kind, name)
    assert validate(obj) == []
    broken = copy.deepcopy(obj)
    _set(broken, path, value)
    problems = validate(broken)
    assert problems, f"{kind}: {path} was accepted"
    assert path.rsplit(".", 1)[-1] in "\n".join(problems)


def test_every_pod_meets_pod_security_restricted() -> None:
    """The checks of the Pod Security Standard "restricted" profile, and a read-only root."""
    problems = []
    for name, directory in BUILDS.items():
        for where, pod in pod_specs(build(directory)).items():
            problems += [f"{name} {where}: {p}" for p in _restricted_problems(pod)]
    assert not problems, "\n".join(problems)
    assert set(pod_specs(build(DEMO))) == {
        "Deployment/celery-queue-exporter",
        "Deployment/celery-flower",
        "Deployment/celery-worker",
        "Deployment/celery-beat",
    }


def _restricted_problems(pod: dict[str, Any]) -> list[str]:
    problems = []
    pod_sc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{key} is set")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}  # fmt: skip
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']} is {kinds}")
    containers = pod.get("initContainers", []) + pod["containers"]
    for c in containers:
        sc = c.get("securityContext", {})

        def effective(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc.get(key, pod_sc.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{c['name']}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append(f"{c['name']}: runAsUser 0")
        if (effective("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{c['name']}: seccompProfile is not RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"] or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: capabilities are not drop [ALL]")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']}: root filesystem is writable")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
    return problems


def test_the_restricted_check_catches_each_violation() -> None:
    (worker,) = find(build(DEMO), "Deployment", "celery-worker")
    pod = worker["spec"]["template"]["spec"]
    assert _restricted_problems(pod) == []
    breaks = [
        ("securityContext.runAsNonRoot", False),
        ("securityContext.seccompProfile.type", "Unconfined"),
        ("containers.0.securityContext.allowPrivilegeEscalation", True),
        ("containers.0.securityContext.capabilities.drop", ["NET_RAW"]),
        ("containers.0.securityContext.readOnlyRootFilesystem", False),
        ("hostNetwork", True),
    ]
    for path, value in breaks:
        broken = copy.deepcopy(pod)
        _set(broken, path, value)
        assert _restricted_problems(broken), f"{path}={value!r} passed"


def _service_monitor_jobs(objects: list[dict[str, Any]]) -> dict[str, str]:
    """ServiceMonitor name -> the job label the Prometheus Operator gives its targets (the value of
    the Service label named by jobLabel, else the Service's name)."""
    jobs = {}
    for sm in find(objects, "ServiceMonitor"):
        selector = sm["spec"]["selector"]["matchLabels"]
        services = [s for s in find(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
        assert len(services) == 1, f"ServiceMonitor {sm['metadata']['name']} selects {len(services)} Services"
        job_label = sm["spec"].get("jobLabel")
        jobs[sm["metadata"]["name"]] = services[0]["metadata"]["labels"][job_label] if job_label else \
            services[0]["metadata"]["name"]  # fmt: skip
    return jobs


def test_job_names_ports_and_scrape_timings_are_the_stacks() -> None:
    objects = build(DEMO)
    config = alerting.load()
    assert _service_monitor_jobs(objects) == {
        "celery-queue-exporter": config.jobs["exporter"],
        "celery-flower": config.jobs["flower"],
    }
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    exporter_port = next(o.default for o in OPTIONS if o.name == "port")
    flower_port = int(next(a for a in compose["flower"]["command"] if a.startswith("--port=")).split("=")[1])
    (exporter,) = find(objects, "Deployment", "celery-queue-exporter")
    (flower,) = find(objects, "Deployment", "celery-flower")
    assert [p["containerPort"] for p in exporter["spec"]["template"]["spec"]["containers"][0]["ports"]] == [
        exporter_port
    ]
    assert [p["containerPort"] for p in flower["spec"]["template"]["spec"]["containers"][0]["ports"]] == [flower_port]
    assert flower["spec"]["template"]["spec"]["containers"][0]["image"] == compose["flower"]["image"]
    assert exporter["spec"]["template"]["spec"]["containers"][0]["image"] == compose["exporter"]["image"]
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["global"]
    for sm in find(objects, "ServiceMonitor"):
        for endpoint in sm["spec"]["endpoints"]:
            assert endpoint["interval"] == prometheus["scrape_interval"], sm["metadata"]["name"]
            assert endpoint["scrapeTimeout"] == prometheus["scrape_timeout"], sm["metadata"]["name"]
    # every Service and ServiceMonitor port resolves to a named container port of its pods
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"].items()
        pods = [
            d for d in find(objects, "Deployment") if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        names = {p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_every_target_carries_the_broker_label_of_its_service() -> None:
    """The Prometheus Operator copies a Service label named in targetLabels onto its targets: the
    exporter's and Flower's carry `broker`, as the file_sd targets of compose and the native runner."""
    objects = build(DEMO)
    for sm in find(objects, "ServiceMonitor"):
        assert sm["spec"].get("targetLabels") == [catalog.BROKER_LABEL], sm["metadata"]["name"]
        selector = sm["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in find(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
        assert service["metadata"]["labels"][catalog.BROKER_LABEL] == DEFAULT_BROKER, sm["metadata"]["name"]


def test_network_policy_admits_only_prometheus_to_the_metrics_ports() -> None:
    objects = build(DEMO)
    (policy,) = find(objects, "NetworkPolicy")
    selected = {
        d["metadata"]["name"]
        for d in find(objects, "Deployment")
        for e in policy["spec"]["podSelector"]["matchExpressions"]
        if d["spec"]["template"]["metadata"]["labels"].get(e["key"]) in e["values"]
    }
    assert selected == {"celery-queue-exporter", "celery-flower"}
    (rule,) = policy["spec"]["ingress"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [{"app.kubernetes.io/name": "prometheus"}]
    metrics_ports = {p["targetPort"] for s in find(objects, "Service") for p in s["spec"]["ports"]}
    assert {p["port"] for p in rule["ports"]} == metrics_ports


def _query_queues(query: str) -> list[set[str]]:
    return [set(m.split("|")) for m in re.findall(r'queue_name=~"([^"]*)"', query)]


def test_demo_queues_are_the_ones_the_workers_consume() -> None:
    """workers/routing.py is the source: the worker's -Q, the exporter's configured queues (so the
    query answers at 0 while KEDA has scaled the workers to zero) and the ScaledObject's query."""
    objects = build(DEMO)
    (worker,) = find(objects, "Deployment", "celery-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("-Q") + 1].split(",") == QUEUES
    (config_map,) = [c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("celery-queue-exporter")]
    assert yaml.safe_load(config_map["data"]["config.yaml"])["queues"] == QUEUES
    (scaled,) = find(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert _query_queues(trigger["metadata"]["query"]) == [set(QUEUES), set(QUEUES)]
    # Workers scale on their own broker's queues (the broker label of the exporter's Service).
    assert trigger["metadata"]["query"].count(f'{catalog.BROKER_LABEL}="{DEFAULT_BROKER}"') == 2
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "celery-worker"}


# KEDA's prometheus trigger parameters (keda.sh/docs/2.16/scalers/prometheus): trigger metadata is a
# free string map in the CRD, so a misspelled key there would be silently ignored.
PROMETHEUS_TRIGGER_KEYS = {"serverAddress", "query", "queryParameters", "threshold", "activationThreshold",
                           "namespace", "customHeaders", "ignoreNullValues", "unsafeSsl", "timeout"}  # fmt: skip


def test_scaled_object_is_safe_to_scale_to_zero() -> None:
    (scaled,) = find(build(DEMO), "ScaledObject")
    spec = scaled["spec"]
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "prometheus"
    assert set(meta) <= PROMETHEUS_TRIGGER_KEYS, set(meta) - PROMETHEUS_TRIGGER_KEYS
    assert {"celery_queue_length", "celery_queue_unacked"} <= set(re.findall(r"celery_\w+", meta["query"]))
    assert meta["ignoreNullValues"] == "false", "a lost series must keep the replicas, not read as 0"
    assert spec["minReplicaCount"] == 0 and float(meta["activationThreshold"]) == 0
    assert float(meta["threshold"]) > 0
    (worker,) = find(build(DEMO), "Deployment", "celery-worker")
    assert "replicas" not in worker["spec"], "kubectl apply would reset what KEDA scaled"
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert grace >= 60 and scale_down["stabilizationWindowSeconds"] >= 60
