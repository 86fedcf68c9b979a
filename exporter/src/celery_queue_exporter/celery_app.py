"""`--app module:attr`: the queues a Celery app declares and its broker transport options."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from celery_queue_exporter.config import ConfigError


def load_app(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    # As `celery -A` does: the app's module is found from the working directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of user code is a bad option
        raise ConfigError(f"--app {ref}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in (attr or "app").split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"--app {ref}: {module_name} has no attribute {attr or 'app'}") from None
    if not hasattr(target, "conf"):
        raise ConfigError(f"--app {ref}: {target!r} is not a Celery app")
    return target


def transport_options(app: Any) -> dict[str, Any]:
    return dict(app.conf.broker_transport_options or {})


def app_queues(app: Any) -> list[str]:
    """Queue names the app declares: task_queues, its default queue and explicit task_routes."""
    names: list[str] = []
    for queue in app.conf.task_queues or ():
        name = getattr(queue, "name", None) or (queue if isinstance(queue, str) else None)
        if name:
            names.append(name)
    if app.conf.task_default_queue:
        names.append(app.conf.task_default_queue)
    routes = app.conf.task_routes
    for route in routes.values() if isinstance(routes, dict) else ():
        if isinstance(route, dict) and isinstance(route.get("queue"), str):
            names.append(route["queue"])
    return list(dict.fromkeys(names))
