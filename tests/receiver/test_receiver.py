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


def _raw_post(receiver: Receiver, head: bytes, body: bytes = b"") -> int:
    """Send a hand-written request (what requests would never send) and return the status code."""
    import socket

    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)
        reply = sock.recv(4096)
    return int(reply.split()[1])


def test_rejects_missing_or_negative_lengths_and_malformed_alerts(receiver: Receiver) -> None:
    assert _raw_post(receiver, b"") == 411
    assert _raw_post(receiver, b"Content-Length: -1\r\n") == 400
    assert _raw_post(receiver, b"Content-Length: lots\r\n") == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    assert requests.post(receiver.url + "/", data=deep, timeout=5).status_code == 400
    bad_alerts = [
        {"alerts": [{"status": "firing", "labels": {"a": 1}}]},
        {"alerts": [{"status": "exploded", "labels": {}}]},
        {"alerts": [{"status": "resolved", "labels": {}, "annotations": ["x"]}]},
    ]
    for payload in bad_alerts:
        reply = requests.post(receiver.url + "/", json=payload, timeout=5)
        assert reply.status_code == 400, payload
        assert "alerts[0]" in reply.json()["error"]
    assert requests.get(receiver.url + "/-/healthy", timeout=5).ok
    assert not receiver.file.exists() or receiver.file.read_text() == ""
    assert "Traceback" not in receiver.proc.log()


def test_resolved_line_says_how_long_it_fired(receiver: Receiver) -> None:
    alert = {**PAYLOAD["alerts"][0], "status": "resolved", "endsAt": "2026-11-23T21:03:05Z"}
    payload = {**PAYLOAD, "status": "resolved", "alerts": [alert]}
    assert requests.post(receiver.url + "/", json=payload, timeout=5).status_code == 200
    line = wait_until(lambda: [x for x in receiver.proc.log().splitlines() if "RESOLVED" in x], 5, "line")[0]
    assert "RESOLVED CeleryQueueBacklog [warning] queue_name=default (after 3m05s): Queue default holds" in line


def test_a_line_cut_by_a_crash_does_not_swallow_the_next_record(receiver: Receiver) -> None:
    requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).raise_for_status()
    receiver.stop()
    with open(receiver.file, "a") as f:
        f.write('{"received_at": "2026-11-23T21:00:00Z", "payl')  # what a crash mid-write leaves
    receiver.start()
    requests.post(receiver.url + "/", json=PAYLOAD, timeout=5).raise_for_status()
    records = requests.get(receiver.url + "/alerts", timeout=5).json()["payloads"]
    assert [r["payload"] for r in records] == [PAYLOAD, PAYLOAD]
    assert all(isinstance(r["received_unix"], float) for r in records)


def test_a_payload_it_cannot_store_is_a_500_alertmanager_retries(tmp_path: Path) -> None:
    import shutil

    r = Receiver(tmp_path)
    r.file = tmp_path / "data" / "alerts.jsonl"
    r.start()
    try:
        shutil.rmtree(tmp_path / "data")  # the volume went away under it
        assert requests.post(r.url + "/", json=PAYLOAD, timeout=5).status_code == 500
        assert requests.get(r.url + "/-/healthy", timeout=5).ok
        (tmp_path / "data").mkdir()
        assert requests.post(r.url + "/", json=PAYLOAD, timeout=5).status_code == 200
    finally:
        r.stop()


def test_an_unusable_file_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "dir.jsonl").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "--port", "0", "--file", str(tmp_path / "dir.jsonl")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot use --file" in result.stderr and "Traceback" not in result.stderr
