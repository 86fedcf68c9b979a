"""Consumers per queue and worker liveness, from the background inspect reading (consumers.py),
whose thread this collector owns: `start()` and `stop()` run with the exporter."""

from __future__ import annotations

from collections.abc import Iterator

from celery_queue_exporter import metrics
from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.consumers import ConsumersReading
from celery_queue_exporter.exposition import ColumnFamily, gauge


class WorkersCollector:
    """Absent while no inspect reading succeeded (or with none configured); consumers a broker
    reading gives itself (`BrokerReading.consumers`) take the place of inspect's per-queue counts."""

    def __init__(self, consumers: ConsumersReading | None) -> None:
        self.consumers = consumers

    def start(self) -> None:
        if self.consumers is not None:
            self.consumers.start()

    def stop(self) -> None:
        if self.consumers is not None:
            self.consumers.stop()

    def cache_sizes(self) -> dict[str, int]:
        return {"workers_seen": len(self.consumers.workers())} if self.consumers is not None else {}

    def families(self, r: BrokerReading) -> Iterator[ColumnFamily]:
        # Whether the inspect reading runs and how often it fails, so that an alert on stale
        # consumers can tell "off by design" and "refused by the broker" from "stuck".
        enabled = self.consumers is not None and self.consumers.enabled()
        yield gauge(metrics.CONSUMERS_READING_ENABLED, int(enabled))
        if self.consumers is not None:
            errors = self.consumers.errors()
            reasons = sorted(errors)
            yield ColumnFamily(metrics.CONSUMERS_READING_ERRORS, (reasons,), [errors[reason] for reason in reasons])
        if r.up and r.consumers is not None:
            yield ColumnFamily(metrics.QUEUE_CONSUMERS, (r.queues,), r.consumers)
        snapshot = self.consumers.snapshot() if self.consumers is not None else None
        if snapshot is None:
            return
        taken_at, counts = snapshot
        if r.consumers is None:
            names = list(r.queues) if r.up else sorted(counts)
            names += sorted(set(counts) - set(names))  # queues workers consume that the broker does not know yet
            yield ColumnFamily(metrics.QUEUE_CONSUMERS, (names,), [counts.get(q, 0) for q in names])
        # The reading's age also tells how fresh celery_worker_up is (CeleryExporterConsumersStale).
        yield gauge(metrics.QUEUE_CONSUMERS_TIMESTAMP, taken_at)
        workers = self.consumers.workers()
        names = sorted(workers)
        yield ColumnFamily(metrics.WORKER_UP, (names,), [workers[w] for w in names])
