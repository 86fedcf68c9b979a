"""Queues, exchanges and the routing table of the demo app.

Queue -> exchange (type) -> routing keys:
  default         default (direct)         default
  periodic_tasks  periodic_tasks (direct)  periodic_tasks   <- periodic_task
  error_logs      logs (direct)            error            <- log_message("error", ...)
  warning_logs    logs (direct)            warning          <- log_message("warning", ...)
  transient_logs  logs (direct)            info, debug      <- log_message("info"|"debug", ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu import Exchange, Queue, binding

DEFAULT_QUEUE = "default"
PERIODIC_QUEUE = "periodic_tasks"
PERIODIC_TASK = "workers.tasks.periodic_task"
LOG_TASK = "workers.tasks.log_message"

LOGS = Exchange("logs", type="direct")
LOG_QUEUE_BY_LEVEL = {
    "error": "error_logs",
    "warning": "warning_logs",
    "info": "transient_logs",
    "debug": "transient_logs",
}

TASK_QUEUES = (
    Queue(DEFAULT_QUEUE, Exchange(DEFAULT_QUEUE, type="direct"), routing_key=DEFAULT_QUEUE),
    Queue(PERIODIC_QUEUE, Exchange(PERIODIC_QUEUE, type="direct"), routing_key=PERIODIC_QUEUE),
    Queue("error_logs", LOGS, routing_key="error"),
    Queue("warning_logs", LOGS, routing_key="warning"),
    Queue("transient_logs", bindings=[binding(LOGS, routing_key="info"), binding(LOGS, routing_key="debug")]),
)
WORKER_QUEUES = ",".join(q.name for q in TASK_QUEUES)


def log_level(level: object) -> str:
    """The routing key for a log level; ValueError for a level with no queue."""
    key = str(level).lower()
    if key not in LOG_QUEUE_BY_LEVEL:
        raise ValueError(f"log level must be one of {', '.join(LOG_QUEUE_BY_LEVEL)}, not {level!r}")
    return key


def route_task(
    name: str, args: Sequence[Any], kwargs: dict[str, Any], options: dict[str, Any], task: Any = None, **_: Any
) -> dict[str, Any] | None:
    """Celery router (task_routes). An explicit queue or exchange given by the caller wins."""
    if options.get("queue") or options.get("exchange"):
        return None
    if name == PERIODIC_TASK:
        return {"queue": PERIODIC_QUEUE}
    if name == LOG_TASK:
        level = log_level(args[0] if args else (kwargs or {}).get("level"))
        # The queue is named too so that publishing declares it (with its bindings) first:
        # kombu drops a message sent to an exchange that has no binding in Redis yet.
        return {"queue": LOG_QUEUE_BY_LEVEL[level], "exchange": LOGS.name, "routing_key": level}
    return None
