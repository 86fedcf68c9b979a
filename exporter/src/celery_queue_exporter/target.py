"""One broker the exporter watches, with everything it keeps for it: the broker reader (and its
discovery state), the consumers thread, the collectors and the renderer's caches.

A process serving several brokers holds one Target per broker; nothing is shared between them
but the code, so each one's state is bounded by its own queues.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from celery_queue_exporter.broker import Broker, open_broker
from celery_queue_exporter.collectors import HealthCollector, QueueCollector, WorkersCollector
from celery_queue_exporter.config import Config
from celery_queue_exporter.consumers import ConsumersReading
from celery_queue_exporter.exposition import Renderer


class Target:
    def __init__(self, broker: Broker, consumers: ConsumersReading | None = None) -> None:
        self.broker = broker
        self.queues = QueueCollector()
        self.workers = WorkersCollector(consumers)
        self.health = HealthCollector(broker.error_reasons, broker.visibility_timeout)
        self.renderer = Renderer()
        self._lock = threading.Lock()  # concurrent scrapes wait rather than double the load on the broker

    @classmethod
    def from_config(cls, config: Config, static_queues: Sequence[str]) -> Target:
        """Raises connection.BrokerUrlError for a broker URL no broker kind serves."""
        broker = open_broker(config, static_queues)
        consumers = None
        if config.consumers_interval > 0:
            consumers = ConsumersReading(
                config.broker_url,
                config.consumers_interval,
                config.consumers_timeout,
                broker.celery_transport_options,
                worker_grace_period=config.worker_grace_period,
            )
        return cls(broker, consumers)

    def start(self) -> None:
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop()
        self.broker.close()

    def collect(self) -> list[Metric]:
        """Read the broker once and return this scrape's families."""
        with self._lock:
            return self._collect()

    def exposition(self, also: Iterable[Collector] = ()) -> bytes:
        """A scrape in the Prometheus text format: this broker's families, then those of `also`."""
        with self._lock:
            families = self._collect()
            for collector in also:
                families += collector.collect()
            return self.renderer.render(families)

    def cache_sizes(self) -> dict[str, int]:
        """Entries kept between scrapes, per cache (memory tests bound them)."""
        return {**self.broker.cache_sizes(), **self.workers.cache_sizes(), **self.renderer.cache_sizes()}

    def _collect(self) -> list[Metric]:
        reading = self.broker.read()
        return [
            *self.queues.families(reading),
            *self.workers.families(reading),
            *self.health.families(reading),
        ]
