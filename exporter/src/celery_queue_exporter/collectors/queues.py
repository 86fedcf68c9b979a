"""Per-queue families from one broker reading: depth, per-priority depth, unacked, ages."""

from __future__ import annotations

from collections.abc import Iterator

from celery_queue_exporter import metrics
from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.exposition import ColumnFamily


class QueueCollector:
    """Yields nothing while the broker is down; a column the broker kind cannot know is absent, and
    so is the line of a queue whose entry is None."""

    def families(self, r: BrokerReading) -> Iterator[ColumnFamily]:
        if not r.up:
            return
        by_queue = (r.queues,)
        yield ColumnFamily(metrics.QUEUE_LENGTH, by_queue, r.ready)
        if r.priority_lengths is not None:
            steps = [str(s) for s in r.priority_steps]
            yield ColumnFamily(metrics.QUEUE_PRIORITY_LENGTH, (r.queues, steps), r.priority_lengths)
        if r.unacked is not None:
            yield ColumnFamily(metrics.QUEUE_UNACKED, by_queue, r.unacked)
        if r.ready_age is not None:
            if r.ready_age_missing:  # some queues' ages are not known: their lines are absent
                known = [(q, age) for q, age in zip(r.queues, r.ready_age, strict=True) if age is not None]
                yield ColumnFamily(metrics.QUEUE_OLDEST_MESSAGE_AGE, ([q for q, _ in known],), [a for _, a in known])
            else:
                yield ColumnFamily(metrics.QUEUE_OLDEST_MESSAGE_AGE, by_queue, r.ready_age)  # type: ignore[arg-type]
        if r.unacked_age is not None:
            yield ColumnFamily(metrics.QUEUE_UNACKED_OLDEST_AGE, by_queue, r.unacked_age)
