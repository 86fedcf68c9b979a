"""Celery settings of the demo app, read from the environment once per app."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers import routing

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
# RabbitMQ stores no results: Celery's RPC backend sends them back as AMQP messages.
AMQP_RESULT_BACKEND = "rpc://"


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot use."""


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = DEFAULT_BROKER_URL
    visibility_timeout: float = 3600
    periodic_seconds: float = 30  # prometheus/alerting.yml's CeleryBeatMissing knows it (tests/stack/test_facts.py)
    retry_countdown: float = 5
    beat_schedule_file: str = "celerybeat-schedule"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        broker = env.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
        return cls(
            broker_url=broker,
            result_backend=env.get("CELERY_RESULT_BACKEND") or default_result_backend(broker),
            visibility_timeout=_number(env, "CELERY_VISIBILITY_TIMEOUT", cls.visibility_timeout, minimum=1),
            periodic_seconds=_number(env, "CELERY_PERIODIC_SECONDS", cls.periodic_seconds, minimum=0.1),
            retry_countdown=_number(env, "CELERY_RETRY_COUNTDOWN", cls.retry_countdown, minimum=0),
            beat_schedule_file=env.get("CELERY_BEAT_SCHEDULE_FILE") or cls.beat_schedule_file,
        )


def default_result_backend(broker_url: str) -> str:
    """The broker itself on Redis; the RPC backend on RabbitMQ (amqp://, amqps://, pyamqp://)."""
    scheme = broker_url.split("://", 1)[0].lower()
    return AMQP_RESULT_BACKEND if scheme in ("amqp", "amqps", "pyamqp", "pyamqps") else broker_url


def celery_config(s: Settings) -> dict[str, Any]:
    """The app's Celery configuration (lowercase setting names)."""
    return {
        "broker_url": s.broker_url,
        "result_backend": s.result_backend,
        "broker_connection_retry_on_startup": True,
        # kombu's Redis transport needs no option for priorities: every message goes to the
        # list of its priority step (default steps 0/3/6/9, kept), and workers BRPOP the
        # step-0 lists of all their queues first. `queue_order_strategy` only orders queues
        # within one step, so it stays kombu's round robin (no queue starves another).
        "broker_transport_options": {"visibility_timeout": s.visibility_timeout},
        # At least once across a broker outage (tests/faults/test_broker_outage.py, on prefork):
        # - A task that finishes while Redis (broker and result backend) is down cannot store
        #   its result: without retries Celery reports it failed (ConnectionError) and, after
        #   the reconnect, acknowledges it: it did its work, ends FAILURE and never runs again.
        #   So retry the result write until the backend answers (connection errors only).
        "result_backend_always_retry": True,
        # - Messages a worker prefetched but had not yet handed to a pool process are dropped
        #   from its memory when the connection breaks, and kombu cannot put them back while
        #   Redis is down: they wait in the unacked hash for the visibility timeout (1 h by
        #   default). One message per process holds only what the processes run (measured
        #   after a 30 s outage: 0 of 24 late-ack tasks left waiting, 11 with Celery's 4).
        "worker_prefetch_multiplier": 1,
        # - Running late-ack tasks finish, store their result and are acknowledged after the
        #   reconnect. Cancelling them (Celery 6's default) would leave them in the unacked hash
        #   until the visibility timeout.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_queues": routing.TASK_QUEUES,
        "task_default_queue": routing.DEFAULT_QUEUE,
        "task_default_exchange": routing.DEFAULT_QUEUE,
        "task_default_routing_key": routing.DEFAULT_QUEUE,
        "task_routes": (routing.route_task,),
        # Events for Flower: task-sent from producers, the rest from workers (-E does the same).
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": {
            "periodic-task": {"task": routing.PERIODIC_TASK, "schedule": s.periodic_seconds},
        },
        "beat_schedule_filename": s.beat_schedule_file,
        # Read by failing_task; a custom key is kept in app.conf like any setting.
        "workers_retry_countdown": s.retry_countdown,
    }
