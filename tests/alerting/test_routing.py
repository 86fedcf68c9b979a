"""alertmanager/alertmanager.yml, checked by amtool: every alert reaches the receiver of its
severity, inhibition names only real alerts, and an inhibiting alert fires before its targets."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from alertmanager import channels
from prometheus import generate
from prometheus.generate import catalog, promql
from tests.support.procs import REPO, tool

CONFIG = REPO / "alertmanager" / "alertmanager.yml"
EXAMPLE_LABELS = {
    generate.Scope.QUEUE: {"queue_name": "default", "job": "celery-queue-exporter", "instance": "e:9818"},
    generate.Scope.WORKER: {"worker": "w1@host", "job": "celery-queue-exporter", "instance": "e:9818"},
    generate.Scope.TASK: {"task": "workers.tasks.add"},
    generate.Scope.BEAT: {"task": "workers.tasks.periodic_task"},
    generate.Scope.GLOBAL: {"job": "celery-queue-exporter", "instance": "e:9818"},
}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("amtool"), *args], capture_output=True, text=True, timeout=60)


def routes_test(config: Path, receiver: str, labels: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return amtool(
        "config",
        "routes",
        "test",
        "--config.file",
        str(config),
        f"--verify.receivers={receiver}",
        *(f"{k}={v}" for k, v in labels.items()),
    )


def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec", generate.ALERTS, ids=lambda s: s.name)
def test_each_alert_routes_to_the_receiver_of_its_severity(spec: generate.AlertSpec) -> None:
    labels = {"alertname": spec.name, "severity": spec.severity, **EXAMPLE_LABELS[spec.scope]}
    result = routes_test(CONFIG, spec.severity, labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_alert_without_severity_still_reaches_the_local_receiver() -> None:
    result = routes_test(CONFIG, "local", {"alertname": "SomethingElse"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_grouped_by_alert_broker_and_queue_worker_task_with_resolutions_on() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", catalog.BROKER_LABEL, "queue_name", "worker", "task"]
    for receiver in config["receivers"]:
        for kind, integrations in receiver.items():
            if kind.endswith("_configs"):
                assert all(i.get("send_resolved") for i in integrations), receiver["name"]


def _names(matchers: list[str]) -> set[str]:
    names = set()
    for matcher in matchers:
        m = re.fullmatch(r'alertname(=~|=)"([^"]+)"', matcher)
        if m:
            names |= set(m.group(2).split("|"))
    return names


def test_inhibit_rules_name_only_real_alerts_and_cover_the_outages() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    known = {a.name for a in generate.ALERTS}
    for rule in rules:
        assert _names(rule["source_matchers"]) <= known
        assert _names(rule["target_matchers"]) <= known
    blinded = {
        target
        for rule in rules
        if _names(rule["source_matchers"]) >= {"CeleryBrokerDown", "CeleryExporterDown"}
        for target in _names(rule["target_matchers"])
    }
    exporter_fed = {a.name for a in generate.ALERTS if a.scope in (generate.Scope.QUEUE, generate.Scope.WORKER)}
    blind_spots = {"CeleryExporterQueuesDropped", "CeleryExporterConsumersStale", "CeleryExporterScrapeErrors"}
    assert blinded == exporter_fed | blind_spots


def test_the_outage_inhibition_matches_on_the_labels_of_every_target_shape_of_exporter_down() -> None:
    """The labels the instance shapes of CeleryExporterDown carry (prometheus/generate/catalog.py),
    and the job shape is inhibited by them on the job alone."""
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    outage = [r for r in rules if _names(r["source_matchers"]) >= {"CeleryBrokerDown", "CeleryExporterDown"}]
    assert [r["equal"] for r in outage] == [["job", "instance", catalog.BROKER_LABEL]]
    rule = yaml.safe_load((generate.RULES_DIR / "production" / "celery-alerts.yml").read_text())
    expr = next(r["expr"] for g in rule["groups"] for r in g["rules"] if r.get("alert") == "CeleryExporterDown")
    assert f"unless on (job, instance, {catalog.BROKER_LABEL})" in expr
    shapes = [r for r in rules if r["target_matchers"] == ['alertname="CeleryExporterDown"', 'instance=""']]
    assert shapes == [
        {
            "source_matchers": ['alertname="CeleryExporterDown"', 'instance=~".+"'],
            "target_matchers": ['alertname="CeleryExporterDown"', 'instance=""'],
            "equal": ["job"],
        }
    ]


def _delay(alert: str, config: generate.AlertingConfig) -> float:
    """The least time from an outage to this alert firing (`for:`, plus the beat window)."""
    params = config.params(alert)
    delay = promql.seconds(params["for"])
    if alert == "CeleryExporterConsumersStale":
        delay += promql.seconds(params["max_age"])
    if alert == "CeleryBeatMissing":
        delay += min(promql.seconds(p) for p in params["tasks"].values()) * params["missed_periods"]
    return delay


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("CeleryBrokerDown", "CeleryWorkerDown"),
        ("CeleryBrokerDown", "CeleryQueueNoConsumers"),
        ("CeleryBrokerDown", "CeleryBeatMissing"),
        ("CeleryFlowerDown", "CeleryBeatMissing"),
        ("CeleryBrokerDown", "CeleryExporterConsumersStale"),
    ],
)
def test_an_outage_alert_fires_before_the_alerts_it_causes_and_inhibits(source: str, target: str) -> None:
    config = generate.load()
    assert _delay(source, config) < _delay(target, config)


def test_the_config_with_every_channel_set_is_valid_and_routes_alike(tmp_path: Path) -> None:
    env = {
        "ALERT_WEBHOOK_URL": "https://pager.example/hook",
        "ALERT_SLACK_API_URL": "https://hooks.slack.example/services/T/B/X",
        "ALERT_SLACK_CHANNEL": "#celery",
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_FROM": "alertmanager@example.com",
        "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
        "ALERT_SMTP_USERNAME": "alertmanager",
        "ALERT_SMTP_PASSWORD": "s3cret",
    }
    assert channels.main(["--out", str(tmp_path)], env) == 0
    rendered = tmp_path / "alertmanager.yml"
    result = amtool("check-config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    for spec in generate.ALERTS:
        labels = {"alertname": spec.name, "severity": spec.severity, **EXAMPLE_LABELS[spec.scope]}
        assert routes_test(rendered, spec.severity, labels).returncode == 0, spec.name
