"""The exporter's own health and configuration: broker up, scrape duration and errors, build
info, queues reported and dropped, unattributed unacked entries, round trips, how Redis is read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from celery_queue_exporter import __version__, metrics
from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.exposition import ColumnFamily, gauge


class HealthCollector:
    """Keeps the error counters (every reason the broker kind counts starts at 0)."""

    def __init__(self, error_reasons: Iterable[str], visibility_timeout: float | None, build_info: bool = True) -> None:
        self.errors_total: Counter[str] = Counter({reason: 0 for reason in error_reasons})
        self.visibility_timeout = visibility_timeout
        self.build_info = build_info  # a process-wide fact: /metrics has it, /probe?target= does not

    def families(self, r: BrokerReading) -> Iterator[ColumnFamily]:
        self.errors_total.update(r.errors)
        yield gauge(metrics.BROKER_UP, 1 if r.up else 0)
        if self.visibility_timeout is not None:
            yield gauge(metrics.BROKER_VISIBILITY_TIMEOUT, self.visibility_timeout)
        yield gauge(metrics.SCRAPE_DURATION, r.duration)
        reasons = sorted(self.errors_total)
        yield ColumnFamily(metrics.SCRAPE_ERRORS, (reasons,), [self.errors_total[reason] for reason in reasons])
        if self.build_info:
            yield build_info()
        yield gauge(metrics.QUEUES_REPORTED, len(r.queues))
        yield gauge(metrics.QUEUES_DROPPED, r.queues_dropped)
        if r.unattributed_unacked is not None:
            yield gauge(metrics.UNACKED_UNATTRIBUTED, r.unattributed_unacked)
        if r.round_trips is not None:
            yield gauge(metrics.REDIS_ROUND_TRIPS, r.round_trips)
        if r.read_mode is not None:
            modes = sorted({"plain", "scripts", r.read_mode})
            yield ColumnFamily(metrics.REDIS_READ_MODE, (modes,), [int(m == r.read_mode) for m in modes])


def build_info() -> ColumnFamily:
    """celery_exporter_build_info: once per process (/metrics), whatever the targets."""
    return ColumnFamily(metrics.BUILD_INFO, ([__version__],), [1])
