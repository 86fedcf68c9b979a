"""The local webhook receiver, run as a real process and fed real Alertmanager-shaped payloads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.procs import Proc, free_port, wait_until

PAYLOAD = {
    "version": "4",
    "status": "firing",
    "receiver": "local",
    "groupLabels": {"alertname": "CeleryQueueBacklog", "queue_name": "default"},
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "CeleryQueueBacklog",
                "severity": "warning",
                "queue_name": "default",
                "job": "celery-queue-exporter",
                "instance": "127.0.0.1:9818",
            },
            "annotations": {
                "summary": "Tasks are piling up in a Celery queue.",
                "description": "Queue default holds 1.5k tasks waiting for a worker (threshold 1000).",
            },
            "startsAt": "2026-11-23T21:00:00Z",
        }
    ],
}


class Receiver:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.file = tmp_path / "alerts.jsonl"
        self.tmp_path = tmp_path
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self.proc = Proc(
            "receiver",
            [sys.executable, "-m", "receiver", "--port", str(self.port), "--file", str(self.file)],
            self.tmp_path,
        )
        wait_until(lambda: requests.get(self.url + "/-/healthy", timeout=1).ok, 10, "receiver")
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path).start()
    yield r
    r.stop()


def test_prints_one_readable_line_per_alert_and_keeps_the_payload(receiver: Receiver) -> None:
    resolved = {**PAYLOAD, "status": "resolved", "alerts": [{**PAYLOAD["alerts"][0], "status": "resolved"}]}
    assert requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).status_code == 200
    assert requests.post(receiver.url + "/", json=resolved, timeout=5).status_code == 200
    log = wait_until(lambda: receiver.proc.log().count("CeleryQueueBacklog") == 2 and receiver.proc.log(), 5, "lines")
    lines = [line for line in log.splitlines() if "CeleryQueueBacklog" in line]
    assert "FIRING CeleryQueueBacklog [warning] queue_name=default: Queue default holds 1.5k" in lines[0]
    assert "RESOLVED CeleryQueueBacklog" in lines[1]
    records = [json.loads(line) for line in receiver.file.read_text().splitlines()]
    assert [r["payload"] for r in records] == [PAYLOAD, resolved]


def test_rejects_bad_input_without_dying(receiver: Receiver) -> None:
    assert requests.post(receiver.url + "/", data=b"{not json", timeout=5).status_code == 400
    assert requests.post(receiver.url + "/", data=b"\xff\xfe", timeout=5).status_code == 400
    assert requests.post(receiver.url + "/", json=["a", "list"], timeout=5).status_code == 400
    assert requests.post(receiver.url + "/", json={"alerts": "nope"}, timeout=5).status_code == 400
    too_big = b'{"alerts": [], "pad": "' + b"x" * (2 << 20) + b'"}'
    assert requests.post(receiver.url + "/", data=too_big, timeout=5).status_code == 413
    # still alive and still accepting the real thing
    assert requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).status_code == 200
    assert len(receiver.file.read_text().splitlines()) == 1


def test_keeps_what_it_wrote_across_a_restart(receiver: Receiver) -> None:
    requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).raise_for_status()
    receiver.stop()
    receiver.start()
    requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).raise_for_status()
    assert len(receiver.file.read_text().splitlines()) == 2
    assert len(requests.get(receiver.url + "/alerts", timeout=5).json()["payloads"]) == 2


def test_bad_port_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "receiver", "--port", "99999"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "is not a TCP port" in result.stderr and "Traceback" not in result.stderr
