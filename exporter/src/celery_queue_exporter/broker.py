"""The broker interface: what a broker kind reads per scrape, and how the exporter opens one.

A broker kind is one module with a class that satisfies `Broker` (see `redis_broker.RedisBroker`):

    class Broker(Protocol):
        kind: str                            # "redis", ...: names the kind in logs
        error_reasons: tuple[str, ...]       # reasons of celery_exporter_scrape_errors_total it counts,
                                             # exported at 0 from the start
        visibility_timeout: float | None     # celery_broker_visibility_timeout_seconds; None: absent
        celery_transport_options: dict       # what Celery's inspect needs to reach the same broker
        def read(self) -> BrokerReading      # one scrape; never raises for a broker problem:
                                             # returns up=False and counts the reason in errors
        def close(self) -> None
        def cache_sizes(self) -> dict[str, int]  # entries held between scrapes (tests bound them)

`BrokerReading` holds the per-queue columns, parallel to `queues`. A column the kind cannot know is
None, and its metric is then absent; 0 means "known to be zero". So a RabbitMQ reading fills
`ready`, `unacked` and `consumers` from the management API, `ready_age` only when producers stamp
the AMQP timestamp (a None entry for each other queue, counted in `ready_age_missing`, so a kind
that always knows every age costs the collector nothing), and leaves `priority_lengths` and
`unacked_age` None. `consumers` given by the
broker itself take the place of the inspect reading's per-queue counts (celery_worker_up still
comes from inspect when it is on, and celery_queue_consumers_timestamp_seconds tells that
reading's time). `queues` are Celery's work queues only (event, reply and pidbox queues
skipped, see redis_layout.is_internal_queue), configured ones included at 0 before they exist;
`duration` is the seconds `read()` took; `errors` counts this scrape's problems by reason.

To add a kind: write its module (a `Broker` class with a `from_config(config, static_queues)`
constructor, the broker URL's schemes it serves), add its schemes to `open_broker` below, and its
tests. Everything downstream (collectors, rendering, the HTTP server, per-target state) is shared.
Each `Target` (target.py) opens its own Broker: keep all of a broker's state on the instance,
never at module level, so that one process can serve several brokers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from celery_queue_exporter.connection import BrokerUrlError, redact_url

if TYPE_CHECKING:
    from celery_queue_exporter.config import Config


@dataclass
class BrokerReading:
    """What one scrape found. Per-queue columns are parallel to `queues`; None means not known."""

    up: bool
    queues: list[str] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)  # celery_queue_length
    unacked: list[int] | None = None  # celery_queue_unacked
    ready_age: list[float | None] | None = None  # celery_queue_oldest_message_age_seconds
    ready_age_missing: int = 0  # entries of ready_age that are None: the queue's age not known
    unacked_age: list[float] | None = None  # celery_queue_unacked_oldest_age_seconds
    consumers: list[int] | None = None  # celery_queue_consumers, when the broker itself knows them
    priority_steps: tuple[int, ...] = ()
    priority_lengths: list[int] | None = None  # celery_queue_priority_length, queue-major over steps
    queues_dropped: int = 0
    unattributed_unacked: int | None = None  # celery_exporter_unacked_unattributed
    round_trips: int | None = None  # celery_exporter_redis_round_trips
    read_mode: str | None = None  # celery_exporter_redis_read_mode: how the broker is read ("scripts", "plain")
    errors: Counter[str] = field(default_factory=Counter)
    duration: float = 0.0


class Broker(Protocol):
    kind: str
    error_reasons: tuple[str, ...]
    visibility_timeout: float | None
    celery_transport_options: dict[str, Any]

    def read(self) -> BrokerReading: ...

    def close(self) -> None: ...

    def cache_sizes(self) -> dict[str, int]: ...


def open_broker(config: Config, static_queues: Sequence[str]) -> Broker:
    """The Broker for `config.broker_url`; raises connection.BrokerUrlError for a URL it cannot serve."""
    from celery_queue_exporter.connection import SCHEMES as REDIS_SCHEMES
    from celery_queue_exporter.rabbitmq_broker import SCHEMES as RABBITMQ_SCHEMES
    from celery_queue_exporter.rabbitmq_broker import RabbitMQBroker
    from celery_queue_exporter.redis_broker import RedisBroker

    openers: dict[str, Callable[[Config, Sequence[str]], Broker]] = {
        **dict.fromkeys(REDIS_SCHEMES, RedisBroker.from_config),
        **dict.fromkeys(RABBITMQ_SCHEMES, RabbitMQBroker.from_config),
    }
    url = config.broker_url
    scheme = urlsplit(url.split(";", 1)[0].strip()).scheme.lower()
    opener = openers.get(scheme)
    if opener is None:
        raise BrokerUrlError(
            f"unsupported broker URL scheme {scheme!r} in {redact_url(url)} (expected one of {', '.join(openers)})"
        )
    return opener(config, static_queues)
