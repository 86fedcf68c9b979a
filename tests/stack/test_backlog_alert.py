"""End to end, with the real components: a backlog over 1000 tasks becomes a delivered
CeleryQueueBacklog alert naming the queue; a backlog of exactly 1000 stays quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path).running() as s:
        yield s


def backlog_alerts(stack: LocalStack, queue: str) -> list[dict]:
    return [
        a
        for a in stack.delivered()
        if a["labels"]["alertname"] == "CeleryQueueBacklog" and a["labels"].get("queue_name") == queue
    ]


def test_backlog_over_1000_is_delivered_naming_the_queue_and_1000_is_not(stack: LocalStack) -> None:
    stack.publish("--queue", "backlog_over", "--count", "1001")
    stack.publish("--queue", "backlog_at", "--count", "1000")
    wait_until(
        lambda: (
            stack.exporter_value("celery_queue_length", queue_name="backlog_over") == 1001
            and stack.exporter_value("celery_queue_length", queue_name="backlog_at") == 1000
        ),
        30,
        "the exporter to see both backlogs",
    )

    fired = wait_until(lambda: backlog_alerts(stack, "backlog_over"), 90, "the alert at the receiver")
    alert = fired[0]
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "warning"
    assert "backlog_over" in alert["annotations"]["description"]
    assert "1.001k" in alert["annotations"]["description"]

    # Both backlogs were there before the alert's `for` began; give the quiet one as long again.
    time.sleep(6)
    assert backlog_alerts(stack, "backlog_at") == []
    assert not [
        a
        for a in stack.prometheus_alerts()
        if a["labels"].get("queue_name") == "backlog_at" and a["labels"]["alertname"] == "CeleryQueueBacklog"
    ]


def test_the_worker_runs_tasks_and_flower_metrics_reach_prometheus(stack: LocalStack) -> None:
    stack.run([str(Path(sys.executable).parent / "celery"), "-A", "workers.app", "call", "workers.tasks.add",
               "--args", "[2, 3]"])  # fmt: skip
    query = 'sum(flower_events_total{type="task-succeeded", task="workers.tasks.add"})'
    wait_until(
        lambda: stack.query(query) and float(stack.query(query)[0]["value"][1]) >= 1,
        30,
        "Flower's task-succeeded counter for add in Prometheus",
    )
