"""make demo: a backlog nobody consumes, followed until its alert reaches the receiver.

Prints a timeline: published, seen by the exporter, pending in Prometheus, firing,
delivered. Bounded: gives up after DEMO_TIMEOUT_S and says where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests
from kombu import Connection

from native.settings import REPO, VENV_BIN, Settings
from native.stack import saved_settings, supervisor

QUEUE = "demo_backlog"
COUNT = 1500
ALERT = "CeleryQueueBacklog"
DEMO_TIMEOUT_S = 600


def _exporter_length(s: Settings) -> float:
    for line in requests.get(f"{s.url('exporter')}/metrics", timeout=2).text.splitlines():
        if line.startswith(f'celery_queue_length{{queue_name="{QUEUE}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _alert_state(s: Settings) -> str:
    alerts = requests.get(f"{s.url('prometheus')}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    states = {
        a["state"] for a in alerts if a["labels"].get("alertname") == ALERT and a["labels"].get("queue_name") == QUEUE
    }
    return "firing" if "firing" in states else "pending" if "pending" in states else ""


def _delivered(s: Settings, since: float) -> str:
    """The receiver's line for our alert, if a firing notification arrived after `since`."""
    path = s.run_dir / "receiver" / "alerts.jsonl"
    if not path.exists():
        return ""
    for line in path.read_text().splitlines():
        record = json.loads(line)
        received = datetime.strptime(record["received_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if received.timestamp() + 1 < since:
            continue
        for alert in record["payload"].get("alerts", []):
            labels = alert.get("labels", {})
            if (
                alert.get("status") == "firing"
                and labels.get("alertname") == ALERT
                and labels.get("queue_name") == QUEUE
            ):
                return f"{record['received_at']} {labels.get('severity')}: {alert['annotations']['description']}"
    return ""


def _purge(s: Settings) -> None:
    # The demo (not the exporter, which never writes) empties its own queue, through kombu on
    # either broker (on Redis every priority list of the queue).
    with Connection(s.broker_url, connect_timeout=5) as conn, contextlib.suppress(*conn.channel_errors):
        conn.default_channel.queue_purge(QUEUE)  # RabbitMQ refuses a queue that does not exist yet


def _wait(what: str, check: Callable[[], object], t0: float, deadline: float) -> object:
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, ValueError, KeyError):
            result = None
        if result:
            print(f"  +{time.monotonic() - t0:6.1f}s  {what}", flush=True)
            return result
        time.sleep(1)
    raise TimeoutError(what)


def demo() -> int:
    s = saved_settings()
    if not supervisor(s).running():
        print("The stack is not running: make up first.", file=sys.stderr)
        return 1
    print(
        f"Demo: {COUNT} tasks to queue {QUEUE!r}, which no worker consumes; alert profile "
        f"{s.alert_profile} (rules from prometheus/{s.rules_dir})."
    )
    _purge(s)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    t0 = time.monotonic()
    try:
        if _alert_state(s):
            print("  waiting for the previous demo's alert to clear first ...", flush=True)
            _wait("previous alert cleared", lambda: not _alert_state(s), t0, deadline)
        t0 = time.monotonic()
        started = time.time()
        env = {**os.environ, "CELERY_BROKER_URL": s.broker_url}
        subprocess.run(
            [str(VENV_BIN / "python"), "-m", "workers.load", "--queue", QUEUE, "--count", str(COUNT)],
            cwd=REPO,
            env=env,
            check=True,
        )
        print(f"  +{time.monotonic() - t0:6.1f}s  published {COUNT} tasks", flush=True)
        _wait(
            f'seen by the exporter: celery_queue_length{{queue_name="{QUEUE}"}} > 1000',
            lambda: _exporter_length(s) > 1000,
            t0,
            deadline,
        )
        _wait(f"{ALERT} pending in Prometheus", lambda: _alert_state(s) in ("pending", "firing"), t0, deadline)
        _wait(f"{ALERT} firing in Prometheus", lambda: _alert_state(s) == "firing", t0, deadline)
        line = _wait("delivered to the receiver", lambda: _delivered(s, started), t0, deadline)
    except TimeoutError as exc:
        print(f"Gave up after {DEMO_TIMEOUT_S}s waiting for: {exc}. Logs: {s.run_dir / 'logs'}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError:
        print("Publishing the tasks failed (see above).", file=sys.stderr)
        return 1
    print(f"\nThe receiver printed:\n  {line}")
    _purge(s)
    print(f"\nQueue {QUEUE!r} purged again: the resolved notification follows at the next group interval.")
    return 0
