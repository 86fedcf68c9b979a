"""celery-queue-exporter: Prometheus metrics for what waits in a Celery Redis broker."""

from celery_queue_exporter.publish_time import PUBLISHED_AT_HEADER, stamp_publish_time

__version__ = "0.1.0"
__all__ = ["PUBLISHED_AT_HEADER", "__version__", "stamp_publish_time"]
