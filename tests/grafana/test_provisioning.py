"""Grafana's provisioning files point at the right datasources, uids and folders, and the
compose file mounts them where they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from grafana.generate import DASHBOARDS_DIR
from tests.support.procs import REPO

PROVISIONING = REPO / "grafana" / "provisioning"
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def datasources() -> dict[str, dict[str, Any]]:
    config = load(PROVISIONING / "datasources" / "datasources.yml")
    assert config["apiVersion"] == 1
    return {ds["uid"]: ds for ds in config["datasources"]}


def test_prometheus_datasource() -> None:
    prometheus = datasources()["prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["access"] == "proxy"
    assert prometheus["isDefault"] is True
    assert prometheus["jsonData"]["alertmanagerUid"] == "alertmanager"


def test_alertmanager_datasource() -> None:
    alertmanager = datasources()["alertmanager"]
    assert alertmanager["type"] == "alertmanager"
    assert alertmanager["url"] == "http://alertmanager:9093"
    assert alertmanager["jsonData"]["implementation"] == "prometheus"


def test_only_one_default_datasource() -> None:
    assert sum(bool(ds.get("isDefault")) for ds in datasources().values()) == 1


def test_time_interval_matches_the_scrape_interval() -> None:
    # Grafana computes $__rate_interval from timeInterval: it must be Prometheus' scrape interval.
    path = REPO / "prometheus" / "prometheus.yml"
    assert path.exists(), f"{path} is missing"
    scrape_interval = (load(path).get("global") or {}).get("scrape_interval", "1m")
    assert datasources()["prometheus"]["jsonData"]["timeInterval"] == scrape_interval


def test_dashboard_provider_loads_the_generated_folder_into_celery() -> None:
    config = load(PROVISIONING / "dashboards" / "dashboards.yml")
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Celery"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT
    assert provider["allowUiUpdates"] is False


def compose_grafana() -> dict[str, Any]:
    path = REPO / "docker-compose.yml"
    assert path.exists(), f"{path} is missing"
    services = load(path).get("services", {})
    assert "grafana" in services, "docker-compose.yml has no grafana service"
    return services["grafana"]


def test_compose_mounts_provisioning_and_dashboards() -> None:
    volumes = compose_grafana().get("volumes", [])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes if isinstance(v, str) and v.startswith("./")}
    assert (REPO / mounts["/etc/grafana/provisioning"]).resolve() == PROVISIONING
    assert (REPO / mounts[DASHBOARDS_MOUNT]).resolve() == DASHBOARDS_DIR


def test_compose_home_dashboard_exists() -> None:
    home = compose_grafana().get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home, "docker-compose.yml sets no home dashboard (GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH)"
    assert home.startswith(DASHBOARDS_MOUNT + "/")
    assert (DASHBOARDS_DIR / home.removeprefix(DASHBOARDS_MOUNT + "/")).exists(), home
