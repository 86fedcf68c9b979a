"""Collectors by concern: each turns one BrokerReading (and what it owns) into metric families.

- queues.py: per-queue families from the broker reading;
- workers.py: consumers per queue and worker liveness, owning the background inspect thread;
- health.py: the exporter's own health and configuration.
"""

from celery_queue_exporter.collectors.health import HealthCollector
from celery_queue_exporter.collectors.queues import QueueCollector
from celery_queue_exporter.collectors.workers import WorkersCollector

__all__ = ["HealthCollector", "QueueCollector", "WorkersCollector"]
