"""Workers per queue, and which workers answer at all, from Celery's `inspect active_queues`, in a
background thread of its own.

A worker killed with SIGKILL sends no worker-offline event, so Flower keeps it "online"; here it
simply stops answering, and celery_worker_up turns 0 for it until worker_grace_period has passed.

A broadcast waits for replies (1 s by default), so it never runs inside a scrape. It is the only
part of the exporter that writes to the broker, through Celery itself: on Redis PUBLISH of the
broadcast and the reply queue Celery declares and pops; on RabbitMQ the pidbox exchanges, the
broadcast and a reply queue of its own. A read-only user cannot do it: the metric is then absent
and the log says why.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from redis.exceptions import NoPermissionError

from celery_queue_exporter.connection import redact_url

log = logging.getLogger(__name__)
# Found with Redis' ACL LOG against Celery 5.7 / kombu 5.7, on top of the exporter's own read-only user.
INSPECT_NEEDS = (
    "Celery's inspect needs PUBLISH for the broadcast and, for its reply queue, MULTI EXEC EVALSHA "
    "SCRIPT|EXISTS SADD SREM ZADD SET DEL BRPOP TIME"
)
# celery_exporter_consumers_reading_errors_total{reason}: refused (permissions), failed (anything else)
ERROR_REASONS = ("refused", "failed")
# Celery's mailbox on RabbitMQ: it declares and publishes to the celery.pidbox exchange, declares
# the reply.celery.pidbox exchange and its own <uuid>.reply.celery.pidbox queue, binds and reads it.
INSPECT_PERMISSIONS_AMQP = {
    "configure": r"^(celery\.pidbox|reply\.celery\.pidbox|[-0-9a-f]+\.reply\.celery\.pidbox)$",
    "write": r"^(celery\.pidbox|[-0-9a-f]+\.reply\.celery\.pidbox)$",
    "read": r"^(reply\.celery\.pidbox|[-0-9a-f]+\.reply\.celery\.pidbox)$",
}
INSPECT_NEEDS_AMQP = "Celery's inspect needs these permissions on the vhost: " + ", ".join(
    f"{kind} {pattern}" for kind, pattern in INSPECT_PERMISSIONS_AMQP.items()
)


class ConsumersReading:
    def __init__(
        self,
        broker_url: str,
        interval: float,
        timeout: float,
        transport_options: Mapping[str, Any],
        worker_grace_period: float = 3600.0,
    ) -> None:
        self.broker_url = broker_url
        self.interval = interval
        self.timeout = timeout
        self.transport_options = dict(transport_options)
        self.worker_grace_period = worker_grace_period
        self._snapshot: tuple[float, dict[str, int]] | None = None
        self._last_seen: dict[str, float] = {}  # worker -> time of the last reading it answered
        self._workers: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_problem: str | None = None
        self._app: Any = None
        self._unavailable = False  # Celery is not installed: the thread has stopped for good
        self._errors: Counter[str] = Counter(dict.fromkeys(ERROR_REASONS, 0))

    def snapshot(self) -> tuple[float, dict[str, int]] | None:
        """(unix time of the reading, workers per queue), or None while no reading succeeded."""
        with self._lock:
            return self._snapshot

    def workers(self) -> dict[str, int]:
        """Worker -> 1 if it answered the last successful reading, 0 if it answered an earlier one
        within worker_grace_period but not that one."""
        with self._lock:
            return dict(self._workers)

    def enabled(self) -> bool:
        """False once the reading stopped for good (Celery not installed)."""
        return not self._unavailable

    def errors(self) -> dict[str, int]:
        """Failed readings since start, by reason (ERROR_REASONS)."""
        with self._lock:
            return dict(self._errors)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consumers-reading", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        if self._app is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail: nothing to do
                self._app.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.read_once()
            self._stop.wait(self.interval)

    def read_once(self) -> None:
        try:
            counts, answering = self._inspect()
        except ImportError:
            self._problem(
                "celery is not installed (pip install 'celery-queue-exporter[celery]'): "
                "celery_queue_consumers is not exported"
            )
            self._unavailable = True
            self._stop.set()
            return
        except Exception as exc:  # noqa: BLE001 - any broker or permission error: report, retry later
            text = str(exc)
            amqp_refused = "ACCESS_REFUSED" in text
            refused = isinstance(exc, NoPermissionError) or "NOPERM" in text or "no permissions" in text
            if refused or amqp_refused:
                user = "RabbitMQ" if amqp_refused else "Redis"
                needs = INSPECT_NEEDS_AMQP if amqp_refused else INSPECT_NEEDS
                why = f"the {user} user may not run it ({needs}); celery_queue_consumers is not exported"
                refused = True
            else:
                why = "celery_queue_consumers is kept from the last good reading, if any"
            self._problem(f"inspect active_queues failed: {type(exc).__name__}: {redact_url(text)}; {why}")
            with self._lock:
                self._errors["refused" if refused else "failed"] += 1
                if refused:
                    self._snapshot = None
                    self._workers = {}
            return
        now = time.time()
        with self._lock:
            self._snapshot = (now, counts)
            for worker in answering:
                self._last_seen[worker] = now
            self._last_seen = {w: t for w, t in self._last_seen.items() if now - t <= self.worker_grace_period}
            self._workers = {w: int(t == now) for w, t in self._last_seen.items()}
        if self._last_problem is not None:
            log.info("inspect active_queues works again")
            self._last_problem = None

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            log.warning("%s", message)
        self._last_problem = message

    def _inspect(self) -> tuple[dict[str, int], list[str]]:
        """(workers per queue, the workers that answered)."""
        if self._app is None:
            from celery import Celery

            app = Celery("celery-queue-exporter", broker=self.broker_url, set_as_current=False)
            # No retries inside a reading (kombu would spend ~6 s on a broker that refuses connections,
            # holding up shutdown): the next interval is the retry.
            app.conf.broker_transport_options = {**self.transport_options, "max_retries": 0}
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_connection_max_retries = 0
            self._app = app
        replies = self._app.control.inspect(timeout=self.timeout).active_queues() or {}
        counts: Counter[str] = Counter()
        for queues in replies.values():
            for name in {q.get("name") for q in queues or () if isinstance(q, dict)}:
                if name:
                    counts[name] += 1
        return dict(counts), list(replies)
