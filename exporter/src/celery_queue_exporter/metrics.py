"""Every metric the exporter serves, declared once: name, type, help text and label names.

Names, label names and help text are what dashboards, alerts and users rely on: change them
here only, and only by adding. The collectors (collectors/) emit these; exposition.py renders them.
A counter is declared without its `_total` suffix, as prometheus_client does; it is rendered with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDef:
    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...] = ()


QUEUE = ("queue_name",)

# Per queue, from the broker reading (collectors/queues.py).
QUEUE_LENGTH = MetricDef(
    "celery_queue_length",
    "gauge",
    "Ready messages waiting in the queue: on Redis summed over its priority lists, on RabbitMQ messages_ready.",
    QUEUE,
)
QUEUE_PRIORITY_LENGTH = MetricDef(
    "celery_queue_priority_length",
    "gauge",
    "Ready messages waiting in one priority list of the queue.",
    ("queue_name", "priority"),
)
QUEUE_UNACKED = MetricDef(
    "celery_queue_unacked",
    "gauge",
    "Messages of the queue delivered to a worker and not acknowledged yet "
    "(prefetched, running with acks_late, or held for their ETA/countdown).",
    QUEUE,
)
QUEUE_OLDEST_MESSAGE_AGE = MetricDef(
    "celery_queue_oldest_message_age_seconds",
    "gauge",
    "Age of the oldest ready message of the queue, 0 when none waits. Exact when the producer stamps "
    "the x-published-at header (celery_queue_exporter.stamp_publish_time); otherwise, on Redis, the time "
    "since the exporter first saw that message at the tail of its list, a lower bound, and on RabbitMQ "
    "from the head message's AMQP timestamp, absent without one.",
    QUEUE,
)
QUEUE_UNACKED_OLDEST_AGE = MetricDef(
    "celery_queue_unacked_oldest_age_seconds",
    "gauge",
    "Seconds since the oldest unacknowledged message of the queue was delivered, 0 when none. "
    "Past the visibility timeout kombu redelivers it: a dead or stuck worker.",
    QUEUE,
)

# Workers and consumers, from the background inspect reading (collectors/workers.py).
QUEUE_CONSUMERS = MetricDef(
    "celery_queue_consumers",
    "gauge",
    "Workers consuming the queue: on Redis from the last background inspect active_queues, on RabbitMQ "
    "the broker's own count.",
    QUEUE,
)
QUEUE_CONSUMERS_TIMESTAMP = MetricDef(
    "celery_queue_consumers_timestamp_seconds",
    "gauge",
    "Unix time of the last successful inspect active_queues reading behind celery_worker_up (and, on "
    "Redis, celery_queue_consumers).",
)
WORKER_UP = MetricDef(
    "celery_worker_up",
    "gauge",
    "1 if the worker answered the last background inspect active_queues, 0 if it answered an earlier "
    "one (within --worker-grace-period) but not that one: stopped, killed or stuck.",
    ("worker",),
)
CONSUMERS_READING_ENABLED = MetricDef(
    "celery_exporter_consumers_reading_enabled",
    "gauge",
    "1 while the background inspect active_queues reading runs (--consumers-interval > 0 and Celery "
    "installed), else 0: the per-queue consumers and worker liveness metrics are then absent by design.",
)
CONSUMERS_READING_ERRORS = MetricDef(
    "celery_exporter_consumers_reading_errors",
    "counter",
    "Background inspect active_queues readings that failed, by reason (refused: the broker refused a "
    "command inspect needs, e.g. a read-only ACL user; failed: any other error, e.g. the broker unreachable).",
    ("reason",),
)

# The exporter's own health and configuration (collectors/health.py).
BROKER_UP = MetricDef(
    "celery_broker_up", "gauge", "1 if this scrape could read the broker (RabbitMQ: its management API), else 0."
)
BROKER_VISIBILITY_TIMEOUT = MetricDef(
    "celery_broker_visibility_timeout_seconds",
    "gauge",
    "kombu's visibility_timeout the exporter was configured with: unacked messages older than this are redelivered.",
)
SCRAPE_DURATION = MetricDef(
    "celery_exporter_scrape_duration_seconds", "gauge", "Seconds this scrape spent reading the broker."
)
SCRAPE_ERRORS = MetricDef(
    "celery_exporter_scrape_errors",
    "counter",
    "Problems met while scraping, by reason (redis: broker unreachable or refused; wrong_type: a queue "
    "or unacked key of the wrong Redis type; malformed_message: a message at a list tail without a "
    "delivery tag; malformed_unacked: an unacked entry without routing info).",
    ("reason",),
)
BUILD_INFO = MetricDef("celery_exporter_build_info", "gauge", "Version of the exporter; always 1.", ("version",))
QUEUES_REPORTED = MetricDef("celery_exporter_queues", "gauge", "Queues reported by this scrape.")
QUEUES_DROPPED = MetricDef(
    "celery_exporter_queues_dropped", "gauge", "Queues found but not reported because of --max-queues."
)
UNACKED_UNATTRIBUTED = MetricDef(
    "celery_exporter_unacked_unattributed",
    "gauge",
    "Unacked messages whose queue could not be told from their exchange and routing key.",
)
REDIS_ROUND_TRIPS = MetricDef("celery_exporter_redis_round_trips", "gauge", "Redis round trips this scrape needed.")
REDIS_READ_MODE = MetricDef(
    "celery_exporter_redis_read_mode",
    "gauge",
    "1 for the way the exporter reads Redis, 0 for the other: scripts (pipelined plain commands, and a "
    "read-only script for new unacked entries) or plain (commands only: Redis refused scripts to this user).",
    ("mode",),
)

ALL = (
    QUEUE_LENGTH,
    QUEUE_PRIORITY_LENGTH,
    QUEUE_UNACKED,
    QUEUE_OLDEST_MESSAGE_AGE,
    QUEUE_UNACKED_OLDEST_AGE,
    QUEUE_CONSUMERS,
    QUEUE_CONSUMERS_TIMESTAMP,
    WORKER_UP,
    CONSUMERS_READING_ENABLED,
    CONSUMERS_READING_ERRORS,
    BROKER_UP,
    BROKER_VISIBILITY_TIMEOUT,
    SCRAPE_DURATION,
    SCRAPE_ERRORS,
    BUILD_INFO,
    QUEUES_REPORTED,
    QUEUES_DROPPED,
    UNACKED_UNATTRIBUTED,
    REDIS_ROUND_TRIPS,
    REDIS_READ_MODE,
)
