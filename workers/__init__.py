"""Demo Celery app on Redis that the monitoring stack and its tests run against (see README.md)."""
