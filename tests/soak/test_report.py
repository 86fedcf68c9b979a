"""make soak's verdict (native/soak_report.py) on real answers: a Prometheus that scrapes one
target that answers and one that does not, a receiver that got one notification. The soak itself
runs for 30 minutes and is not part of `make test`; its load profile is checked here against the
thresholds of prometheus/alerting.yml, since a profile above them would make the soak fail for
nothing."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import requests
import yaml

from native import soak_load, soak_report
from native.soak_report import Memory, TargetScrapes
from prometheus import generate
from tests.support.procs import Proc, free_port, tool, wait_until

NOTIFICATION = {
    "version": "4",
    "status": "firing",
    "receiver": "local",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "CeleryWorkerDown", "severity": "warning", "broker": "default", "worker": "w1@h"},
            "annotations": {"summary": "A Celery worker is down."},
            "startsAt": "2026-11-23T21:00:00Z",
        }
    ],
}


def test_failed_scrapes_and_notifications_are_counted_from_real_answers(tmp_path: Path) -> None:
    prom_port, dead_port, receiver_port = free_port(), free_port(), free_port()
    itself, dead = f"127.0.0.1:{prom_port}", f"127.0.0.1:{dead_port}"  # nothing listens on dead_port
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [itself]}]},
            {"job_name": "exporter", "static_configs": [{"targets": [dead]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = Proc(
        "prometheus",
        [
            tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={itself}",
        ],
        tmp_path,
    )
    receiver = Proc(
        "receiver",
        [sys.executable, "-m", "receiver", "--port", str(receiver_port), "--file", str(tmp_path / "alerts.jsonl")],
        tmp_path,
    )
    url, receiver_url = f"http://{itself}", f"http://127.0.0.1:{receiver_port}"
    try:
        wait_until(lambda: requests.get(receiver_url + "/-/healthy", timeout=1).ok, 10, "receiver")
        assert soak_report.notification_lines(soak_report.query_received(receiver_url)) == []
        assert requests.post(receiver_url + "/", json=NOTIFICATION, timeout=5).status_code == 200

        wait_until(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, "prometheus")
        t0 = time.time()

        def scrapes() -> list[TargetScrapes]:
            got = soak_report.query_scrapes("p", url, t0 - 1, time.time())
            return got if len(got) == 2 and min(t.samples for t in got) >= 3 else []

        found = wait_until(scrapes, 30, "three scrapes of each target", interval=0.5)
        notifications = soak_report.notification_lines(soak_report.query_received(receiver_url))
    finally:
        prom.stop()
        receiver.stop()

    by_job = {t.job: t for t in found}
    assert by_job["prometheus"].instance == itself and by_job["prometheus"].failed == 0
    assert by_job["exporter"].instance == dead and by_job["exporter"].failed == by_job["exporter"].samples >= 3
    assert len(notifications) == 1 and "FIRING CeleryWorkerDown broker=default worker=w1@h" in notifications[0]

    expected = {"p": {("prometheus", itself), ("exporter", dead), ("flower", "127.0.0.1:1")}}
    found_problems = soak_report.problems(notifications, found, expected, 3, {"p": 0}, [], [])
    assert found_problems == [
        f"notification: {notifications[0]}",
        f"p: {by_job['exporter'].samples} of {by_job['exporter'].samples} scrapes of exporter {dead} failed",
        "p: never scraped flower 127.0.0.1:1",
    ]
    clean = [t for t in found if t.job == "prometheus"]
    assert soak_report.problems([], clean, {"p": {("prometheus", itself)}}, 3, {"p": 0}, [], []) == []


def test_missed_scrapes_rule_failures_memory_and_restarts_fail_the_soak() -> None:
    scrapes = [TargetScrapes("prometheus-b", "flower", "127.0.0.1:5555", 100, 0)]
    memory = [
        Memory("worker", 150_000, 160_000, 3, 155_000),
        Memory("flower", 60_000, None, 0),
        Memory("beat", None, 50_000),
    ]
    found = soak_report.problems([], scrapes, {}, 118, {"prometheus": 0, "prometheus-b": 2}, memory, ["flower (x)"])
    assert found == [
        "prometheus-b: flower 127.0.0.1:5555 scraped 100 times, expected at least 118",
        "prometheus-b: 2 rule evaluation failures",
        "flower: no process at the end",
        "beat: no process at the start",
        "restarted: flower (x)",
    ]
    table = soak_report.memory_table(memory)
    assert table[1].split() == ["worker", "146.5", "151.4", "156.2", "+9.8", "3"]
    assert table[2].split() == ["flower", "58.6", "-", "-", "-", "0"]


def test_the_load_stays_under_the_production_thresholds() -> None:
    """The soak publishes what alerting.yml calls normal: below every threshold it tests."""
    config = generate.load()
    backlog = config.params("CeleryQueueBacklog")["threshold"]
    failure = config.params("CeleryTaskFailureRateHigh")["threshold"]
    ticks_per_window = int(300 / soak_load.TICK_S)  # rate_window 5m
    assert config.rate_window == "5m"
    for first in range(0, 120):
        window: Counter[str] = Counter()
        for tick in range(first, first + ticks_per_window):
            for batch in soak_load.batches(tick):
                window[batch.name] += int(batch.argv[3])
        # failing_task: `failing` ends FAILURE, `retry` succeeds (fails once, then retried)
        assert window["failing"] / (window["failing"] + window["retry"]) < failure * 0.75  # margin for rate()
    for tick in range(120):
        # everything one tick publishes could sit in one queue at once; each burst drains before the next
        assert sum(int(b.argv[3]) for b in soak_load.batches(tick)) < backlog * 0.8
