"""The tasks of the reference walkthrough. Shared tasks: they bind to whichever app runs them."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from celery import Task, shared_task
from celery.utils.log import get_task_logger

from workers.routing import log_level
from workers.runs import record_run

logger = get_task_logger(__name__)


@shared_task
def add(x: float, y: float) -> float:
    return x + y


@shared_task
def sqrt_task(x: float) -> float:
    if x < 0:
        raise ValueError(f"sqrt_task needs a number >= 0, got {x!r}")
    return math.sqrt(x)


@shared_task(bind=True, max_retries=3)
def failing_task(self: Task, succeed_on_retry: int | None = None) -> str:
    """Fails and retries (same task id every time) until max_retries, then ends FAILURE.

    `succeed_on_retry=n` makes retry n succeed instead, to show a recovering task.
    """
    retries = self.request.retries
    record_run(self.app, self.name, self.request.id)
    if succeed_on_retry is not None and retries >= succeed_on_retry:
        return f"succeeded on retry {retries}"
    countdown = float(self.app.conf.get("workers_retry_countdown", 5))
    logger.warning("attempt %d of %d failed, retrying in %gs", retries + 1, self.max_retries + 1, countdown)
    # After max_retries, retry() raises `exc` itself, so the task ends FAILURE with it.
    raise self.retry(exc=RuntimeError("failing_task failed on purpose"), countdown=countdown)


@shared_task(bind=True)
def bind_task(self: Task) -> dict[str, Any]:
    info = {
        "id": self.request.id,
        "retries": self.request.retries,
        "hostname": self.request.hostname,
        "delivery_info": self.request.delivery_info,
    }
    logger.info("request: %s", info)
    return info


def _sleep_and_record(task: Task, seconds: float) -> float:
    run = record_run(task.app, task.name, task.request.id)
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    logger.info("started (run %s, redelivered=%s), sleeping %gs", run, redelivered, seconds)
    time.sleep(seconds)
    return seconds


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def ack_task(self: Task, seconds: float = 10) -> float:
    """Acknowledged after it ran: a worker dying mid-run means the message is delivered again."""
    return _sleep_and_record(self, seconds)


@shared_task(bind=True)
def no_ack_task(self: Task, seconds: float = 10) -> float:
    """Acknowledged when it starts (Celery's default): lost if the worker dies mid-run."""
    return _sleep_and_record(self, seconds)


@shared_task(bind=True)
def periodic_task(self: Task) -> float:
    """Sent by beat every CELERY_PERIODIC_SECONDS to the periodic_tasks queue."""
    record_run(self.app, self.name, self.request.id)
    now = time.time()
    logger.info("periodic tick at %.3f", now)
    return now


@shared_task(bind=True)
def log_message(self: Task, level: str, text: str) -> dict[str, Any]:
    """Logs `text` at `level`; routed by level through the `logs` exchange (see routing.py)."""
    key = log_level(level)
    logger.log(logging.getLevelName(key.upper()), "%s", text)
    info = self.request.delivery_info or {}
    return {"level": key, "text": text, "exchange": info.get("exchange"), "routing_key": info.get("routing_key")}
