"""End to end on RabbitMQ, with the real components of the stack (no Redis anywhere): a backlog
over 1000 tasks becomes a delivered CeleryQueueBacklog alert naming the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.procs import wait_until
from tests.support.rabbitmq import RabbitMQNode
from tests.support.stack import FLOWER_AUTH, LocalStack


@pytest.fixture
def stack(tmp_path: Path, rabbitmq: RabbitMQNode, vhost: str) -> Iterator[LocalStack]:
    s = LocalStack(tmp_path, broker_url=rabbitmq.amqp_url(vhost), management_url=rabbitmq.management_url)
    with s.running():
        yield s


def test_backlog_alert_delivered_on_rabbitmq(stack: LocalStack) -> None:
    assert "redis" not in stack.table and not stack.table["rabbitmq"].managed
    assert stack.redis.proc is None  # nothing started a Redis
    stack.publish("--queue", "backlog_over", "--count", "1001")
    wait_until(
        lambda: stack.exporter_value("celery_queue_length", queue_name="backlog_over") == 1001,
        30,
        "the exporter to see the backlog",
    )
    # The worker answers the exporter's inspect over AMQP.
    assert [s for s in stack.exporter_metrics().splitlines() if s.startswith('celery_worker_up{worker="e2e-worker@')]

    def delivered() -> list[dict]:
        return [
            a
            for a in stack.delivered()
            if a["labels"]["alertname"] == "CeleryQueueBacklog" and a["labels"].get("queue_name") == "backlog_over"
        ]

    alert = wait_until(delivered, 90, "the alert at the receiver")[0]
    assert alert["status"] == "firing"
    assert "1.001k" in alert["annotations"]["description"]
    # No alert about the exporter itself: on RabbitMQ too it has a fresh consumers reading and no
    # scrape errors (every `for:` here is 5s, so they would be firing by now).
    assert not [a for a in stack.prometheus_alerts() if a["labels"]["alertname"].startswith("CeleryExporter")]

    # Flower reads the lengths of the queues workers consume from the management API (its
    # broker_api) on RabbitMQ: without it the list is empty.
    user, password = FLOWER_AUTH.split(":")
    reply = requests.get(stack.url("flower") + "/api/queues/length", auth=(user, password), timeout=10)
    lengths = {q["name"]: q["messages"] for q in reply.json()["active_queues"]}
    assert lengths.get("default") == 0, reply.text[:500]
