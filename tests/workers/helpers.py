"""Real Celery workers, beat and apps of the demo app, pointed at a test's own redis-server."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery import Celery

from tests.support.procs import VENV_BIN, Proc, RedisServer, celery_worker, wait_until
from workers.app import create_app
from workers.config import Settings

CELERY = str(VENV_BIN / "celery")


def broker_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    """Environment of a worker/beat/load process: broker in db 0, results in db 1."""
    return {
        "CELERY_BROKER_URL": redis.url,
        "CELERY_RESULT_BACKEND": redis.url.replace("/0", "/1"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def make_app(redis: RedisServer) -> Celery:
    """The app as a producer in the test process (its settings, this Redis)."""
    env = broker_env(redis)
    return create_app(Settings(broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]))


def start_worker(
    name: str,
    redis: RedisServer,
    log_dir: Path,
    queues: str,
    pool: str = "threads",
    concurrency: int = 4,
    env: dict[str, str] | None = None,
) -> Proc:
    """A worker process, returned once it logged `ready.` (mingle/gossip off: faster start)."""
    argv = [
        CELERY,
        "-A",
        "workers.app",
        "worker",
        "-n",
        f"{name}@%h",
        "-Q",
        queues,
        "-E",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
    ]
    return celery_worker(name, argv, log_dir, env=broker_env(redis, **(env or {})))


def kill_group(proc: Proc) -> None:
    """SIGKILL a worker's main process and its pool children at once (no warm shutdown)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(timeout=10)
    proc.stop()  # closes the log; the group is gone already


def unacked(redis: RedisServer) -> dict[str, dict[str, Any]]:
    """kombu's `unacked` hash, as delivery tag -> message."""
    raw = redis.client().hgetall("unacked")
    return {tag.decode(): json.loads(value)[0] for tag, value in raw.items()}


def queued_messages(redis: RedisServer, key: str) -> list[dict[str, Any]]:
    """The messages waiting in one Redis list, oldest first."""
    return [json.loads(m) for m in reversed(redis.client().lrange(key, 0, -1))]


class EventLog:
    """Celery events (Flower's view) captured in a thread of the test process."""

    def __init__(self, app: Celery) -> None:
        self.events: list[dict[str, Any]] = []
        self._conn = app.connection_for_read()
        self._receiver = app.events.Receiver(self._conn, handlers={"*": self.events.append})
        self._thread = threading.Thread(target=self._receiver.capture, kwargs={"wakeup": True}, daemon=True)

    def __enter__(self) -> EventLog:
        self._thread.start()
        # Events are pub/sub: wait until the subscription is live. wakeup=True asks the workers
        # for a heartbeat, so the first one arrives at once.
        wait_until(lambda: self.of_type("worker-heartbeat"), 15, "a worker heartbeat event")
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=5)
        self._conn.release()

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["type"] in types]

    def for_task(self, task_id: str, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(types) if types else None
        return [e for e in list(self.events) if e.get("uuid") == task_id and (wanted is None or e["type"] in wanted)]
