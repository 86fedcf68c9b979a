"""Turns one broker reading per scrape into Prometheus metric families."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from celery_queue_exporter import __version__
from celery_queue_exporter.consumers import ConsumersReading
from celery_queue_exporter.exposition import LabelText, gauge, labelled
from celery_queue_exporter.reader import BrokerReader, Reading

ERROR_REASONS = ("redis", "wrong_type", "malformed_message", "malformed_unacked")

HELP = {
    "celery_queue_length": "Ready messages waiting in the queue's Redis lists, summed over all priority steps.",
    "celery_queue_priority_length": "Ready messages waiting in one priority list of the queue.",
    "celery_queue_unacked": "Messages of the queue delivered to a worker and not acknowledged yet "
    "(prefetched, running with acks_late, or held for their ETA/countdown).",
    "celery_queue_oldest_message_age_seconds": "Age of the oldest ready message of the queue, 0 when none "
    "waits. Exact when the producer stamps the x-published-at header (celery_queue_exporter."
    "stamp_publish_time); otherwise the time since the exporter first saw that message at the tail "
    "of its list, a lower bound.",
    "celery_queue_unacked_oldest_age_seconds": "Seconds since the oldest unacknowledged message of the queue "
    "was delivered, 0 when none. Past the visibility timeout kombu redelivers it: a dead or stuck worker.",
    "celery_queue_consumers": "Workers consuming the queue, from the last background inspect active_queues.",
    "celery_queue_consumers_timestamp_seconds": "Unix time of the last successful inspect active_queues "
    "reading behind celery_queue_consumers.",
    "celery_worker_up": "1 if the worker answered the last background inspect active_queues, 0 if it "
    "answered an earlier one (within --worker-grace-period) but not that one: stopped, killed or stuck.",
    "celery_broker_up": "1 if this scrape could read the Redis broker, else 0.",
    "celery_broker_visibility_timeout_seconds": "kombu's visibility_timeout the exporter was configured "
    "with: unacked messages older than this are redelivered.",
    "celery_exporter_scrape_duration_seconds": "Seconds this scrape spent reading the broker.",
    "celery_exporter_scrape_errors": "Problems met while scraping, by reason (redis: broker unreachable or "
    "refused; wrong_type: a queue or unacked key of the wrong Redis type; malformed_message: a message at "
    "a list tail without a delivery tag; malformed_unacked: an unacked entry without routing info).",
    "celery_exporter_build_info": "Version of the exporter; always 1.",
    "celery_exporter_queues": "Queues reported by this scrape.",
    "celery_exporter_queues_dropped": "Queues found but not reported because of --max-queues.",
    "celery_exporter_unacked_unattributed": "Unacked messages whose queue could not be told from their "
    "exchange and routing key.",
    "celery_exporter_redis_round_trips": "Redis round trips this scrape needed.",
}


class QueueCollector(Collector):
    """Reads the broker at every scrape and yields fresh families; nothing is kept between scrapes
    but the error counters and caches of facts that never change (label text, unacked routing)."""

    def __init__(
        self,
        reader: BrokerReader,
        visibility_timeout: float,
        consumers: ConsumersReading | None = None,
    ) -> None:
        self.reader = reader
        self.visibility_timeout = visibility_timeout
        self.consumers = consumers
        self.errors_total: Counter[str] = Counter({reason: 0 for reason in ERROR_REASONS})
        self._labels = LabelText()
        self._lock = threading.Lock()  # concurrent scrapes wait rather than double the load on Redis

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            reading = self.reader.read()
            self.errors_total.update(reading.errors)
            families = list(self._families(reading))
        yield from families

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unknown until a scrape; keeps registration from reading the broker

    def _families(self, r: Reading) -> Iterator[Metric]:
        queues = r.queues
        texts = self._labels.queue(queues)
        by_queue = lambda: ((q,) for q in queues)  # noqa: E731 - built only if .samples is read

        def per_queue(name: str, values: list) -> Metric:
            heads = self._labels.line_heads(name, texts)
            return labelled(name, HELP[name], ("queue_name",), by_queue, values, label_texts=texts, line_heads=heads)

        if r.up:
            yield per_queue("celery_queue_length", r.totals)
            steps = [str(s) for s in r.steps]
            step_texts = self._labels.queue_and_step(queues, steps)
            yield labelled(
                "celery_queue_priority_length",
                HELP["celery_queue_priority_length"],
                ("queue_name", "priority"),
                lambda: ((q, s) for q in queues for s in steps),
                r.lengths,
                label_texts=step_texts,
                line_heads=self._labels.line_heads("celery_queue_priority_length", step_texts),
            )
            yield per_queue("celery_queue_unacked", r.unacked)
            if self.reader.message_age:
                yield per_queue("celery_queue_oldest_message_age_seconds", r.ready_age)
            yield per_queue("celery_queue_unacked_oldest_age_seconds", r.unacked_age)
        yield from self._consumer_families(queues if r.up else None)
        yield gauge("celery_broker_up", HELP["celery_broker_up"], 1 if r.up else 0)
        yield gauge(
            "celery_broker_visibility_timeout_seconds",
            HELP["celery_broker_visibility_timeout_seconds"],
            self.visibility_timeout,
        )
        yield gauge(
            "celery_exporter_scrape_duration_seconds", HELP["celery_exporter_scrape_duration_seconds"], r.duration
        )
        reasons = sorted(self.errors_total)
        yield labelled(
            "celery_exporter_scrape_errors",
            HELP["celery_exporter_scrape_errors"],
            ("reason",),
            [(reason,) for reason in reasons],
            [self.errors_total[reason] for reason in reasons],
            typ="counter",
        )
        yield labelled(
            "celery_exporter_build_info", HELP["celery_exporter_build_info"], ("version",), [(__version__,)], [1]
        )
        yield gauge("celery_exporter_queues", HELP["celery_exporter_queues"], len(queues))
        yield gauge("celery_exporter_queues_dropped", HELP["celery_exporter_queues_dropped"], r.queues_dropped)
        yield gauge(
            "celery_exporter_unacked_unattributed", HELP["celery_exporter_unacked_unattributed"], r.unattributed_unacked
        )
        yield gauge("celery_exporter_redis_round_trips", HELP["celery_exporter_redis_round_trips"], r.round_trips)

    def _consumer_families(self, queues: list[str] | None) -> Iterator[Metric]:
        snapshot = self.consumers.snapshot() if self.consumers is not None else None
        if snapshot is None:
            return
        taken_at, counts = snapshot
        names = list(queues) if queues is not None else sorted(counts)
        extra = sorted(set(counts) - set(names))
        names += extra  # queues workers consume that Redis does not know yet
        yield labelled(
            "celery_queue_consumers",
            HELP["celery_queue_consumers"],
            ("queue_name",),
            lambda: ((q,) for q in names),
            [counts.get(q, 0) for q in names],
            label_texts=self._labels.queue(names),
        )
        yield gauge(
            "celery_queue_consumers_timestamp_seconds", HELP["celery_queue_consumers_timestamp_seconds"], taken_at
        )
        workers = self.consumers.workers()
        names = sorted(workers)
        yield labelled(
            "celery_worker_up",
            HELP["celery_worker_up"],
            ("worker",),
            [(w,) for w in names],
            [workers[w] for w in names],
        )
