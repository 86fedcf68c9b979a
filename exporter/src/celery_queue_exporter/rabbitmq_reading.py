"""One scrape's reading of a RabbitMQ vhost through the management API: one request for the
queue list (pages of the largest size only past PAGED_ABOVE queues), never one per queue.

RabbitMQ tells ready and unacknowledged messages and consumers per queue itself. It samples
them every `collect_statistics_interval` (5 s by default), so a value is that much old at most.
The age of the oldest ready message comes from `head_message_timestamp`, the AMQP `timestamp`
property of the queue's head message: absent when the producer did not set it. What RabbitMQ
does not tell (per-priority depth, the age of the oldest unacked message) is not read.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.rabbitmq_management import ManagementClient, ManagementError
from celery_queue_exporter.redis_layout import is_internal_queue

log = logging.getLogger(__name__)

COLUMNS = ("name", "messages_ready", "messages_unacknowledged", "consumers", "head_message_timestamp")
PAGE_SIZE = 500  # the largest page RabbitMQ's management API serves
PAGED_ABOVE = 5000  # up to this many queues one unpaged request is cheaper than pages
ERROR_REASONS = (
    "rabbitmq_unreachable",
    "rabbitmq_auth",
    "rabbitmq_not_found",
    "rabbitmq_http",
    "malformed_reply",
    "malformed_queue",
)
_COUNTS = ("messages_ready", "messages_unacknowledged", "consumers")


# Celery's rpc:// result backend receives results on a queue named by a UUID per client.
_RESULT_QUEUE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_celery_queue(name: str) -> bool:
    """Celery's event, reply, remote-control and rpc:// result queues are plumbing, and `amq.*`
    names are the server's own: none is work waiting for a worker."""
    return not (is_internal_queue(name) or name.startswith("amq.") or _RESULT_QUEUE.fullmatch(name))


@dataclass
class RabbitReading:
    """What one scrape found. Per-queue lists are parallel to `queues`; `ready_age` is None where
    the head message carries no timestamp (or the queue is empty: then 0)."""

    up: bool
    queues: list[str] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    unacked: list[int] = field(default_factory=list)
    consumers: list[int] = field(default_factory=list)
    ready_age: list[float | None] = field(default_factory=list)
    queues_dropped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    duration: float = 0.0


@dataclass(frozen=True)
class _QueueStats:
    ready: int
    unacked: int
    consumers: int
    head_timestamp: float | None


_EMPTY = _QueueStats(0, 0, 0, None)


class RabbitMQReader:
    """Reads the queues of one vhost; keeps only the queue set and whether to page."""

    def __init__(
        self,
        client: ManagementClient,
        queue_set: QueueSet,
        clock: Callable[[], float] = time.time,
        paged_above: int = PAGED_ABOVE,
    ) -> None:
        self.client = client
        self.queue_set = queue_set
        self.clock = clock
        self.paged_above = paged_above
        self.paged = True  # the first scrape asks one page: it tells how many queues there are
        self._last_error: str | None = None
        self._query = "columns=" + ",".join(COLUMNS)

    def read(self) -> RabbitReading:
        started = time.perf_counter()
        reading = RabbitReading(up=False)
        try:
            listed = self._list(reading)
            self._fill(reading, listed)
            reading.up = True
            if self._last_error is not None:
                log.info("RabbitMQ management API readable again")
            self._last_error = None
        except ManagementError as exc:
            reading.errors[exc.reason] += 1
            if str(exc) != self._last_error:  # one line per new problem, not one per scrape
                log.warning("cannot read the broker: %s", exc)
            self._last_error = str(exc)
        reading.duration = time.perf_counter() - started
        return reading

    def _list(self, reading: RabbitReading) -> list[Any]:
        path = self.client.target.queues_path()
        if not self.paged:
            items = self.client.get_json(f"{path}?{self._query}")
            reading.requests += 1
            if not isinstance(items, list):
                raise self._malformed("a queue list")
            self.paged = len(items) > self.paged_above
            return items
        items: list[Any] = []
        page = 1
        while True:
            reply = self.client.get_json(f"{path}?{self._query}&page={page}&page_size={PAGE_SIZE}&pagination=true")
            reading.requests += 1
            if not isinstance(reply, dict) or not isinstance(reply.get("items"), list):
                raise self._malformed("a page of the queue list")
            items.extend(reply["items"])
            page_count = reply.get("page_count")
            if not isinstance(page_count, int) or page >= page_count:
                break
            page += 1
        self.paged = len(items) > self.paged_above
        return items

    def _malformed(self, what: str) -> ManagementError:
        return ManagementError(
            "malformed_reply", f"the management API at {self.client.target.display} did not answer with {what}"
        )

    def _fill(self, reading: RabbitReading, items: list[Any]) -> None:
        stats: dict[str, _QueueStats] = {}
        bad = 0
        for item in items:
            entry = _parse(item)
            if entry is None:
                bad += 1
                continue
            name, queue_stats, stamp_ok = entry
            bad += not stamp_ok
            if is_celery_queue(name):
                stats[name] = queue_stats
        if bad:
            reading.errors["malformed_queue"] += bad
            log.debug("%d queue entries without a name, or with counts or a timestamp not numbers", bad)
        now = self.clock()
        self.queue_set.settle(now, [], set(stats), ())
        reading.queues = queues = self.queue_set.candidates()
        reading.queues_dropped = self.queue_set.dropped
        for q in queues:
            s = stats.get(q, _EMPTY)
            reading.ready.append(s.ready)
            reading.unacked.append(s.unacked)
            reading.consumers.append(s.consumers)
            if not s.ready:
                reading.ready_age.append(0.0)
            elif s.head_timestamp is None:
                reading.ready_age.append(None)
            else:
                reading.ready_age.append(max(now - s.head_timestamp, 0.0))


def _parse(item: Any) -> tuple[str, _QueueStats, bool] | None:
    """(name, numbers, whether the head timestamp was usable) of one listed queue, None for an
    entry without a name or with counts that are not whole numbers >= 0. Missing counts are 0:
    a queue's stats are not emitted yet."""
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    if not isinstance(name, str):
        return None
    counts = []
    for key in _COUNTS:
        value = item.get(key)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        counts.append(value)
    stamp = item.get("head_message_timestamp")
    head: float | None = None
    if stamp is not None:
        if isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp) and stamp > 0:
            head = float(stamp)
        else:
            return name, _QueueStats(counts[0], counts[1], counts[2], None), False
    return name, _QueueStats(counts[0], counts[1], counts[2], head), True
