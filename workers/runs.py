"""A ledger of task runs in Redis, so tests and people can tell which task ran (again).

One hash per task name, `workers:runs:<task name>`: field = task id, value = times it started.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

RUNS_KEY = "workers:runs:{task}"
KEEP_SECONDS = 24 * 3600

log = logging.getLogger(__name__)


def record_run(app: Any, task: str, task_id: str) -> int | None:
    """Count one start of `task_id`; returns how often it started, None without a Redis backend."""
    client = getattr(app.backend, "client", None)
    if not isinstance(client, redis.Redis):
        return None
    key = RUNS_KEY.format(task=task)
    with client.pipeline() as pipe:
        count, _ = pipe.hincrby(key, task_id, 1).expire(key, KEEP_SECONDS).execute()
    return int(count)


def runs(client: redis.Redis, task: str) -> dict[str, int]:
    """Starts per task id of `task`, read back from the ledger."""
    raw = client.hgetall(RUNS_KEY.format(task=task))
    return {k.decode(): int(v) for k, v in raw.items()}
