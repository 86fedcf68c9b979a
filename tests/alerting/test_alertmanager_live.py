"""The routing, channels and inhibition of alertmanager/ in a real Alertmanager process, fed alerts
through its API: who receives what (local receiver, a paging webhook, Slack, email), resolutions
included, and which alerts the inhibit rules suppress."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from alertmanager import channels
from tests.alerting.fakes import FakeSlack, FakeSMTP
from tests.support.procs import Proc, free_port, tool, wait_until

pytestmark = pytest.mark.slow


class Receiver:
    """python -m receiver as a real process, one JSON-lines file."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.port = free_port()
        self.file = tmp / f"{name}.jsonl"
        argv = [sys.executable, "-m", "receiver", "--port", str(self.port), "--file", str(self.file)]
        self.proc = Proc(f"receiver-{name}", argv, tmp / "logs")
        wait_until(lambda: requests.get(self.url + "-/healthy", timeout=1).ok, 10, f"receiver {name}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        records = requests.get(self.url + "alerts", timeout=5).json()["payloads"]
        found = [{**a, "receiver": r["payload"]["receiver"]} for r in records for a in r["payload"]["alerts"]]
        return [a for a in found if status is None or a["status"] == status]

    def names(self, status: str | None = None) -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["status"]) for a in self.alerts(status)}


class Alertmanager:
    """The repository's Alertmanager config, rendered with `env` channels, with short timings."""

    def __init__(self, tmp: Path, local: Receiver, env: dict[str, str]) -> None:
        self.dir = tmp / "alertmanager"
        assert channels.main(["--out", str(self.dir)], env) == 0
        config_path = self.dir / "alertmanager.yml"
        config = yaml.safe_load(config_path.read_text())
        config["route"].update(group_wait="1s", group_interval="1s")
        config_path.write_text(yaml.safe_dump(config))
        (self.dir / "endpoints").mkdir()
        (self.dir / "endpoints" / "local-receiver-url").write_text(local.url + "\n")
        self.port = free_port()
        argv = [
            tool("prometheus-alertmanager"),
            "--config.file=alertmanager.yml",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        self.proc = Proc("alertmanager", argv, tmp / "logs", cwd=self.dir)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, 20, "alertmanager")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, *alerts: dict[str, str], resolved: bool = False) -> None:
        now = datetime.now(UTC).isoformat()
        body = [
            {
                "labels": labels,
                "annotations": {"description": f"{labels['alertname']} test alert", "runbook_url": "docs/runbooks.md"},
                **({"endsAt": now} if resolved else {}),
            }
            for labels in alerts
        ]
        requests.post(self.url + "/api/v2/alerts", json=body, timeout=5).raise_for_status()

    def states(self) -> dict[tuple[str, ...], dict[str, Any]]:
        alerts = requests.get(self.url + "/api/v2/alerts", timeout=5).json()
        return {tuple(sorted(a["labels"].items())): a["status"] for a in alerts}


EXPORTER = {"job": "celery-queue-exporter", "instance": "e:9818"}


def alert(name: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **labels}


def assert_inhibition(
    am: Alertmanager, local: Receiver, active: list[dict[str, str]], inhibited: list[dict[str, str]]
) -> None:
    """Post every alert; the inhibited ones end suppressed and undelivered, the others active and
    delivered."""
    am.post(*active, *inhibited)

    def settled() -> bool:
        states = am.states()
        return len(states) == len(active) + len(inhibited) and len(local.alerts()) >= len(active)

    wait_until(settled, 20, "Alertmanager to process every alert and notify the active ones")
    time.sleep(2.5)  # more group intervals: nothing inhibited may come late
    states = am.states()
    wrong = {
        "should be suppressed": [
            labels
            for labels in inhibited
            if states[tuple(sorted(labels.items()))]["state"] != "suppressed"
            or not states[tuple(sorted(labels.items()))]["inhibitedBy"]
        ],
        "should be active": [labels for labels in active if states[tuple(sorted(labels.items()))]["state"] != "active"],
    }
    assert wrong == {"should be suppressed": [], "should be active": []}
    delivered = {tuple(sorted(a["labels"].items())) for a in local.alerts()}
    assert delivered == {tuple(sorted(labels.items())) for labels in active}


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    slack, smtp = FakeSlack(), FakeSMTP()
    local, pager = Receiver("local", tmp_path), Receiver("pager", tmp_path)
    env = {
        "ALERT_WEBHOOK_URL": pager.url,
        "ALERT_SLACK_API_URL": slack.url,
        "ALERT_SLACK_CHANNEL": "#celery-alerts",
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_FROM": "alertmanager@example.com",
        "ALERT_SMTP_SMARTHOST": smtp.address,
        "ALERT_SMTP_REQUIRE_TLS": "false",
    }
    am = Alertmanager(tmp_path, local, env)
    try:
        yield {"am": am, "local": local, "pager": pager, "slack": slack, "smtp": smtp}
    except BaseException:
        print(am.proc.log()[-3000:])
        raise
    finally:
        for proc in (am.proc, local.proc, pager.proc):
            proc.stop()
        slack.close()
        smtp.close()


def test_critical_pages_warning_does_not_and_every_channel_gets_resolutions(parts: dict[str, Any]) -> None:
    am, local, pager, slack, smtp = (parts[k] for k in ("am", "local", "pager", "slack", "smtp"))
    critical = alert("CeleryQueueNoConsumers", "critical", queue_name="q1", **EXPORTER)
    warning = alert("CeleryQueueLatencyHigh", "warning", queue_name="q2", **EXPORTER)
    am.post(critical, warning)

    wait_until(lambda: len(local.alerts("firing")) == 2, 20, "both alerts at the local receiver")
    assert {(a["labels"]["alertname"], a["receiver"]) for a in local.alerts()} == {
        ("CeleryQueueNoConsumers", "critical"),
        ("CeleryQueueLatencyHigh", "warning"),
    }
    wait_until(lambda: pager.names() == {("CeleryQueueNoConsumers", "firing")}, 20, "the page")
    wait_until(lambda: len(slack.received) == 2, 20, "two Slack messages")
    assert all(r["json"]["channel"] == "#celery-alerts" for r in slack.received)
    assert any("[FIRING:1] CeleryQueueNoConsumers queue_name=q1" in t for t in slack.texts())
    wait_until(lambda: len(smtp.messages) == 2, 20, "two emails")
    assert any("Subject: [FIRING:1] CeleryQueueLatencyHigh queue_name=q2" in m for m in smtp.messages)

    am.post(critical, resolved=True)
    wait_until(lambda: ("CeleryQueueNoConsumers", "resolved") in pager.names(), 20, "the page resolved")
    wait_until(lambda: ("CeleryQueueNoConsumers", "resolved") in local.names(), 20, "resolved at the local receiver")
    wait_until(lambda: any("[RESOLVED] CeleryQueueNoConsumers" in t for t in slack.texts()), 20, "Slack resolved")
    wait_until(lambda: any("Subject: [RESOLVED] CeleryQueueNoConsumers" in m for m in smtp.messages), 20, "mail")
    assert ("CeleryQueueLatencyHigh", "firing") not in pager.names(), "a warning never pages"


def test_outages_and_critical_twins_inhibit_what_they_explain(parts: dict[str, Any]) -> None:
    am, local = parts["am"], parts["local"]
    other = {"job": "celery-queue-exporter", "instance": "other:9818"}
    flower = {"job": "flower", "instance": "f:5555"}
    inhibited = [
        alert("CeleryQueueBacklog", "warning", queue_name="q", **EXPORTER),  # exporter down
        alert("CeleryWorkerDown", "warning", worker="w1@host", **EXPORTER),  # exporter down
        alert("CeleryQueueBacklog", "warning", queue_name="twin", **other),  # its critical twin fires
        alert("CeleryBeatMissing", "warning", task="workers.tasks.periodic_task"),  # Flower down
        alert("CeleryTaskFailureRateHigh", "warning", task="app.flaky"),  # Flower down
    ]
    active = [
        alert("CeleryExporterDown", "critical", **EXPORTER),
        alert("CeleryFlowerDown", "warning", **flower),
        alert("CeleryQueueBacklogCritical", "critical", queue_name="twin", **other),
        alert("CeleryQueueBacklog", "warning", queue_name="q", **other),  # another exporter: not blind
        alert("CeleryQueueBacklog", "warning", queue_name="solo", **other),  # no critical twin
    ]
    assert_inhibition(am, local, active, inhibited)


def test_a_blind_exporter_hides_only_its_own_alerts_in_every_shape_of_exporter_down(parts: dict[str, Any]) -> None:
    """The shapes of CeleryExporterDown as the generated rule emits them (prometheus/tests/
    monitoring.test.yml checks that side): with the target's job and instance (scrape failing, or
    target gone from service discovery; with its broker when it has one), and with the job only
    (no target of the job at all)."""
    am, local = parts["am"], parts["local"]
    job = {"job": "celery-queue-exporter"}
    gone, failing, live, probe = ({**job, "instance": f"{host}:9818"} for host in ("gone", "failing", "live", "probe"))
    outages = [
        alert("CeleryExporterDown", "critical", **gone),  # removed from service discovery
        alert("CeleryExporterDown", "critical", **failing),  # up == 0
        alert("CeleryExporterDown", "critical", **probe, broker="payments"),  # one broker of a multi-target exporter
    ]
    inhibited = [
        alert("CeleryExporterDown", "critical", **job),  # the job shape, while the instance shape says it
        alert("CeleryQueueBacklog", "warning", queue_name="q", **gone),
        alert("CeleryWorkerDown", "warning", worker="w1@host", **gone),
        alert("CeleryQueueNoConsumers", "critical", queue_name="q", **failing),
        alert("CeleryQueueBacklog", "warning", queue_name="p", broker="payments", **probe),
    ]
    active = [
        *outages,
        # another instance of the same job: neither the down nor the vanished one hides it, nor the job shape
        alert("CeleryQueueBacklog", "warning", queue_name="q", **live),
        alert("CeleryWorkerDown", "warning", worker="w1@host", **live),
        # the other broker the same exporter probes
        alert("CeleryQueueBacklog", "warning", queue_name="o", broker="orders", **probe),
        # the job shape of another job hides nothing of this one, and nothing hides it
        alert("CeleryExporterDown", "critical", job="celery-queue-exporter-eu"),
    ]
    assert_inhibition(am, local, active, inhibited)


def test_two_brokers_queues_of_one_name_are_notified_and_inhibited_apart(parts: dict[str, Any]) -> None:
    """Two brokers (one exporter probing both, so one job and instance) each with a `default` queue:
    one notification group per broker, and an outage or a critical twin on one broker hides
    nothing of the other."""
    am, local = parts["am"], parts["local"]
    probe = {"job": "celery-queue-exporter", "instance": "probe:9818"}
    flower = {"job": "flower"}
    active = [
        alert("CeleryQueueBacklogCritical", "critical", queue_name="default", broker="payments", **probe),
        alert("CeleryQueueBacklog", "warning", queue_name="default", broker="orders", **probe),  # not payments' twin
        alert("CeleryQueueNoConsumers", "critical", queue_name="default", broker="payments", **probe),
        alert("CeleryQueueNoConsumers", "critical", queue_name="default", broker="orders", **probe),
        alert("CeleryFlowerDown", "warning", broker="orders", instance="flower-orders:5555", **flower),
        alert("CeleryBrokerDown", "critical", broker="billing", job="celery-queue-exporter", instance="b:9818"),
        alert("CeleryBeatMissing", "warning", task="app.tick", broker="payments"),  # orders' Flower is down
        alert("CeleryTaskFailureRateHigh", "warning", task="app.flaky", broker="payments"),  # billing is down
    ]
    inhibited = [
        alert("CeleryQueueBacklog", "warning", queue_name="default", broker="payments", **probe),  # its twin
        alert("CeleryBeatMissing", "warning", task="app.tick", broker="orders"),  # its Flower is down
        alert("CeleryTaskFailureRateHigh", "warning", task="app.flaky", broker="billing"),  # its broker is down
    ]
    assert_inhibition(am, local, active, inhibited)
    payloads = [r["payload"] for r in requests.get(local.url + "alerts", timeout=5).json()["payloads"]]
    no_consumers = [p for p in payloads if p["groupLabels"]["alertname"] == "CeleryQueueNoConsumers"]
    assert sorted(str(p["groupLabels"].get("broker")) for p in no_consumers) == ["orders", "payments"], no_consumers
    for payload in payloads:
        brokers = {a["labels"].get("broker") for a in payload["alerts"]}
        assert len(brokers) == 1 and payload["groupLabels"].get("broker") in brokers, payload
