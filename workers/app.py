"""The Celery app: `celery -A workers.app worker|beat|flower`."""

from __future__ import annotations

from celery import Celery

from celery_queue_exporter import stamp_publish_time
from workers.config import Settings, celery_config


def create_app(settings: Settings | None = None) -> Celery:
    """A configured app; tests build one per Redis server, everything else uses `app`."""
    app = Celery("workers", include=["workers.tasks"])
    app.conf.update(celery_config(settings or Settings.from_env()))
    # Every message this process publishes carries x-published-at, for the exporter's queue age.
    stamp_publish_time(app)
    return app


app = create_app()
