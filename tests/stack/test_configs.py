"""The stack's configuration files, checked by the real tools that will load them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from native.settings import load as load_settings
from native.stack import prepare_run_dir, table
from prometheus import generate
from tests.support.compose import COMPOSE, COMPOSE_SECRETS, compose_config
from tests.support.procs import REPO, tool


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def compose_layout(tmp_path: Path) -> Path:
    """The files as docker-compose mounts them into the Prometheus container."""
    root = tmp_path / "etc-prometheus"
    root.mkdir()
    shutil.copy(REPO / "prometheus" / "prometheus.yml", root)
    shutil.copytree(REPO / "prometheus" / "rules" / "production", root / "rules")
    shutil.copytree(REPO / "prometheus" / "targets" / "compose", root / "targets")
    return root / "prometheus.yml"


def test_promtool_accepts_the_config_as_compose_mounts_it(tmp_path: Path) -> None:
    result = run([tool("promtool"), "check", "config", str(compose_layout(tmp_path))])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["production", "demo"])
def test_promtool_accepts_the_config_as_the_native_runner_lays_it_out(tmp_path: Path, profile: str) -> None:
    settings = load_settings({"STACK_RUN_DIR": str(tmp_path / "run"), "ALERT_PROFILE": profile})
    prepare_run_dir(settings)
    config = settings.run_dir / "prometheus" / "prometheus.yml"
    result = run([tool("promtool"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    targets = yaml.safe_load((settings.run_dir / "prometheus" / "targets" / "flower.yml").read_text())
    assert targets == [{"targets": [f"127.0.0.1:{settings.flower_port}"], "labels": {"broker": "default"}}]


def test_every_rule_file_passes_promtool_check_rules() -> None:
    files = sorted(str(p) for p in (REPO / "prometheus" / "rules").glob("*/*.yml"))
    assert len(files) >= 2
    result = run([tool("promtool"), "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", sorted((REPO / "prometheus" / "tests").glob("*.test.yml")), ids=lambda p: p.name)
def test_promtool_rule_unit_tests(test_file: Path) -> None:
    result = run([tool("promtool"), "test", "rules", test_file.name], cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_files_are_generated_from_alerting_yml() -> None:
    stale = generate.stale_files(generate.load())
    assert not stale, f"stale: {[str(p) for p in stale]}; run: python -m prometheus.generate"


def test_demo_profile_differs_from_production_only_in_durations() -> None:
    durations = generate.load().profiles["demo"]
    assert durations, "the demo profile shortens at least one duration"
    for prod_file in sorted((REPO / "prometheus" / "rules" / "production").glob("*.yml")):
        prod = yaml.safe_load(prod_file.read_text())
        demo = yaml.safe_load((REPO / "prometheus" / "rules" / "demo" / prod_file.name).read_text())
        prod_rules = [r for g in prod["groups"] for r in g["rules"]]
        demo_rules = [r for g in demo["groups"] for r in g["rules"]]
        assert len(prod_rules) == len(demo_rules)
        for p, d in zip(prod_rules, demo_rules, strict=True):
            assert {k: v for k, v in p.items() if k != "for"} == {k: v for k, v in d.items() if k != "for"}
            if p.get("alert") in durations:
                assert d["for"] == durations[p["alert"]] != p["for"]
            else:
                assert d.get("for") == p.get("for")


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run([tool("amtool"), "check-config", str(REPO / "alertmanager" / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_backlog_alert_routes_to_the_warning_receiver() -> None:
    result = run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            "--config.file",
            str(REPO / "alertmanager" / "alertmanager.yml"),
            "--verify.receivers=warning",
            "alertname=CeleryQueueBacklog",
            "severity=warning",
            "queue_name=default",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_file_is_valid() -> None:
    result = compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) >= {
        "redis",
        "worker",
        "beat",
        "flower",
        "exporter",
        "prometheus",
        "alertmanager",
        "receiver",
        "grafana",
    }


def test_docker_compose_refuses_to_start_without_secrets() -> None:
    result = compose_config({})
    assert result.returncode != 0
    assert any(name in result.stderr for name in COMPOSE_SECRETS), result.stderr


def test_docker_compose_publishes_ports_on_loopback_only() -> None:
    services = yaml.safe_load(compose_config(COMPOSE_SECRETS).stdout)["services"]
    published = [(name, p) for name, svc in services.items() for p in svc.get("ports", [])]
    assert published
    for name, port in published:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_docker_compose_pins_every_image() -> None:
    # The versions the tests run against these pins: tests/stack/test_tool_versions.py.
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, svc in compose.items():
        image = svc.get("image", "")
        if not image.startswith("celery-monitoring/"):  # ours are built from this repository
            assert re.search(r":v?\d+\.\d+\.\d+", image), f"{name}: image {image} is not pinned"


def test_native_runner_reads_the_repository_config_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_")}
    settings = load_settings({**env, "STACK_RUN_DIR": str(tmp_path / "run"), "ALERT_PROFILE": "demo"})
    prepare_run_dir(settings)
    prom = settings.run_dir / "prometheus"
    assert (prom / "prometheus.yml").resolve() == REPO / "prometheus" / "prometheus.yml"
    assert (prom / "rules").resolve() == REPO / "prometheus" / "rules" / "demo"
    # Alertmanager's file is the repository's own when no ALERT_* channel is set.
    written = yaml.safe_load((settings.run_dir / "alertmanager" / "alertmanager.yml").read_text())
    assert written == yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    flower = table(settings)["flower"]
    assert "--conf=flower/flowerconfig.py" in flower.argv and flower.cwd == REPO


def test_compose_mounts_the_repository_config_files() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    mounts = {v.split(":")[0] for svc in compose.values() for v in svc.get("volumes", [])}
    for path in ("./prometheus/prometheus.yml", "./grafana/provisioning", "./grafana/dashboards"):
        assert path in mounts, f"compose does not mount {path}"
    assert any(m.startswith("./alertmanager") for m in mounts)
    assert "--conf=flower/flowerconfig.py" in compose["flower"]["command"]


@pytest.mark.parametrize(
    "folder", ["workers", "exporter", "flower", "prometheus", "alertmanager", "receiver", "grafana", "native"]
)
def test_every_service_folder_explains_itself(folder: str) -> None:
    assert (REPO / folder / "README.md").is_file()
