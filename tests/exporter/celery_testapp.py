"""The Celery app tests run as producer (in the test process) and as worker (a subprocess).

Settings come from the environment, so a worker subprocess and the test agree on them.
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery
from kombu import Exchange, Queue

from celery_queue_exporter import stamp_publish_time


def direct_queues(spec: str) -> list[Queue]:
    """ "queue:exchange:routing_key,..." -> queues bound to direct exchanges of other names."""
    queues = []
    for item in filter(None, spec.split(",")):
        name, exchange, routing_key = item.split(":")
        queues.append(Queue(name, Exchange(exchange, type="direct"), routing_key=routing_key))
    return queues


def make_app(broker_url: str, transport_options: dict | None = None, stamp: bool = False, direct: str = "") -> Celery:
    app = Celery("testapp", broker=broker_url, set_as_current=False)
    if direct:
        app.conf.task_queues = direct_queues(direct)
    app.conf.broker_transport_options = transport_options or {}
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    app.conf.task_acks_late = True
    app.conf.worker_prefetch_multiplier = 1
    if stamp:
        stamp_publish_time(app)

    @app.task(name="tests.sleep")
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="tests.noop")
    def noop() -> None:
        return None

    return app


# The worker subprocess: `celery -A tests.exporter.celery_testapp worker ...`
app = make_app(
    os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:1/0"),
    json.loads(os.environ.get("TEST_TRANSPORT_OPTIONS", "{}")),
    direct=os.environ.get("TEST_DIRECT_QUEUES", ""),
)
