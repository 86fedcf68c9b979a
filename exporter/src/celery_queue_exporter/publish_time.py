"""Stamp the publish time into every task message, so the exporter can tell exact queue age.

Kombu's Redis messages carry no timestamp of their own. A producer that calls
`stamp_publish_time(app)` adds one header, read back by the exporter from the oldest
message of each queue. It also sets the AMQP `timestamp` property (whole seconds), which
RabbitMQ reports as the head message's `head_message_timestamp`.
"""

from __future__ import annotations

import time
from typing import Any

PUBLISHED_AT_HEADER = "x-published-at"


def _stamp(
    sender: Any = None, headers: dict[str, Any] | None = None, properties: dict[str, Any] | None = None, **_: Any
) -> None:
    now = time.time()
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = now
    if properties is not None:
        properties.setdefault("timestamp", int(now))


def stamp_publish_time(app: Any = None) -> None:
    """Stamp every task published from this process (Celery's signals are process-wide).

    `app` is accepted so the call reads as configuration of that app; the signal handler is
    connected once, strongly referenced, however often this is called.
    """
    from celery.signals import before_task_publish

    before_task_publish.connect(_stamp, weak=False, dispatch_uid="celery_queue_exporter.stamp_publish_time")
