"""The RabbitMQ broker kind: a vhost's queues read through the management HTTP API
(rabbitmq_reading.py), handed on as a BrokerReading.

RabbitMQ itself tells ready, unacknowledged and consumers per queue; the age of the oldest ready
message only where the head message carries the AMQP `timestamp` (None for the other queues).
Per-priority depth, the age of the oldest unacked message, the visibility timeout and round trips
have no RabbitMQ counterpart: those columns stay None and their metrics absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.rabbitmq_management import AMQP_SCHEMES, ManagementClient, management_target
from celery_queue_exporter.rabbitmq_reading import ERROR_REASONS, RabbitMQReader

if TYPE_CHECKING:
    from celery_queue_exporter.config import Config

SCHEMES = AMQP_SCHEMES


class RabbitMQBroker:
    """Satisfies broker.Broker; all its state (the queue set, paging) is on the instance."""

    kind = "rabbitmq"
    error_reasons = ERROR_REASONS
    visibility_timeout: float | None = None  # RabbitMQ redelivers on connection loss, not on a timer
    celery_transport_options: dict[str, Any]  # none: Celery's amqp transport needs no layout options

    def __init__(self, reader: RabbitMQReader, message_age: bool = True) -> None:
        self.reader = reader
        self.message_age = message_age
        self.celery_transport_options = {}

    @classmethod
    def from_config(cls, config: Config, static_queues: Sequence[str]) -> RabbitMQBroker:
        """Raises connection.BrokerUrlError for a URL it cannot serve."""
        target = management_target(config.broker_url, config.management_url)
        client = ManagementClient(target, config.management_timeout)
        queue_set = QueueSet(static_queues, config.queue_grace_period, config.max_queues)
        return cls(RabbitMQReader(client, queue_set), message_age=config.message_age)

    def close(self) -> None:
        self.reader.client.close()

    def cache_sizes(self) -> dict[str, int]:
        return {"queues_known": len(self.reader.queue_set.last_present)}

    def read(self) -> BrokerReading:
        r = self.reader.read()
        reading = BrokerReading(
            up=r.up,
            queues=r.queues,
            ready=r.ready,
            unacked=r.unacked,
            consumers=r.consumers,
            queues_dropped=r.queues_dropped,
            errors=r.errors,
            duration=r.duration,
        )
        if self.message_age:
            reading.ready_age = r.ready_age
            reading.ready_age_missing = r.ready_age.count(None)
        return reading
