"""docker-compose.ha.yml runs the HA topology of native/ha.py from docker-compose.yml's own files:
checked with `docker-compose config` (no Docker engine needed), against docker-compose.yml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from native import ha
from tests.support.compose import COMPOSE, COMPOSE_SECRETS, compose_config
from tests.support.procs import REPO

HA_COMPOSE = REPO / "docker-compose.ha.yml"
HA_TARGETS = REPO / "prometheus" / "targets" / "compose-ha"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result = compose_config(COMPOSE_SECRETS, (COMPOSE, HA_COMPOSE))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    result = compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_the_override_is_valid() -> None:
    result = compose_config(COMPOSE_SECRETS, (COMPOSE, HA_COMPOSE), quiet=True)
    assert result.returncode == 0, result.stderr


def split_volumes(svc: dict[str, Any], data_target: str) -> tuple[set[str], list[str]]:
    """(every mount but the data volume, the data volume's source)"""
    config, data = set(), []
    for volume in svc["volumes"]:
        source, target = volume.split(":")[:2]
        if target == data_target:
            data.append(source)
        else:
            config.add(volume)
    return config, data


def test_the_replicas_run_the_same_prometheus(services: dict[str, Any], base: dict[str, Any]) -> None:
    replicas = [services[ha.instance("prometheus", r)] for r in ha.REPLICAS]
    data_volumes = []
    for replica, svc in zip(ha.REPLICAS, replicas, strict=True):
        for key in ("image", "command", "security_opt", "restart"):
            assert svc[key] == base["prometheus"][key], f"{ha.instance('prometheus', replica)}.{key}"
        assert svc["environment"] == {ha.REPLICA_ENV: replica}
        config, data = split_volumes(svc, "/prometheus")
        assert config == split_volumes(replicas[0], "/prometheus")[0], "the same config files"
        assert config > split_volumes(base["prometheus"], "/prometheus")[0], "docker-compose.yml's files and more"
        data_volumes += data
    assert len(set(data_volumes)) == len(ha.REPLICAS), "each replica keeps its own TSDB"
    assert base["prometheus"]["environment"] == {ha.REPLICA_ENV: ha.SINGLE}


def test_each_replica_scrapes_both_and_sends_to_both_alertmanagers(services: dict[str, Any]) -> None:
    for job, component, port in (("prometheus", "prometheus", 9090), ("alertmanager", "alertmanager", 9093)):
        expected = [f"{ha.instance(component, r)}:{port}" for r in ha.REPLICAS]
        assert yaml.safe_load((HA_TARGETS / f"{job}.yml").read_text()) == [{"targets": expected}]
        target = f"/etc/prometheus/targets/{job}.yml"
        for replica in ha.REPLICAS:
            mounts = [v for v in services[ha.instance("prometheus", replica)]["volumes"] if v.split(":")[1] == target]
            assert mounts == [f"{HA_TARGETS / job}.yml:{target}:ro"]


def test_the_alertmanagers_form_one_cluster(services: dict[str, Any], base: dict[str, Any]) -> None:
    cluster = {name: f"{name}:{ha.CLUSTER_PORT}" for name in ha.INSTANCES["alertmanager"]}
    single = base["alertmanager"]
    assert "--cluster.listen-address=" in single["command"], "the plain stack opens no gossip port"
    for replica in ha.REPLICAS:
        svc = services[ha.instance("alertmanager", replica)]
        name = ha.instance("alertmanager", replica)
        flags = ha.alertmanager_cluster_args(name, cluster, listen=f"0.0.0.0:{ha.CLUSTER_PORT}")
        assert svc["command"] == ha.without_cluster(single["command"]) + flags
        for key in ("image", "working_dir", "security_opt", "restart", "depends_on"):
            assert svc[key] == single[key], f"{ha.instance('alertmanager', replica)}.{key}"
        assert split_volumes(svc, "/alertmanager")[0] == split_volumes(single, "/alertmanager")[0]
    data = {split_volumes(services[ha.instance("alertmanager", r)], "/alertmanager")[1][0] for r in ha.REPLICAS}
    assert len(data) == len(ha.REPLICAS), "each Alertmanager keeps its own silences and notification log"


def test_no_cluster_port_is_published(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip, _, published = str(port).partition(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port}"
            assert not published.split("/")[0].endswith(f":{ha.CLUSTER_PORT}"), f"{name} publishes the gossip port"


def test_the_second_instances_publish_the_native_runners_ports(services: dict[str, Any]) -> None:
    for name, port in ha.DEFAULT_PORTS.items():
        assert [p.split(":")[1] for p in services[name]["ports"]] == [str(port)], name
