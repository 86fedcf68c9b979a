"""The Redis broker kind: one scrape's reading of a kombu Redis broker (lengths per priority list,
oldest ready message, unacked per queue) with read-only scripts, in constant round trips.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import redis

from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.connection import make_client
from celery_queue_exporter.discovery import BindingSets, Discovery, QueueSet
from celery_queue_exporter.redis_layout import RedisLayout
from celery_queue_exporter.scripts import SCRAPE, UNACKED_TAILS

if TYPE_CHECKING:
    from celery_queue_exporter.config import Config

log = logging.getLogger(__name__)

RESOLVE_CHUNK = 20000  # delivery tags resolved per script call, so Redis is never blocked for long


def unacked_routing(part: bytes) -> tuple[str, str] | None:
    """(exchange, routing_key) from what UNACKED_TAILS returns: `["exchange", "routing_key"]`,
    or a whole small entry `[message, exchange, routing_key]`."""
    try:
        entry = json.loads(part)
    except ValueError:
        return None
    if not isinstance(entry, list) or len(entry) not in (2, 3):
        return None
    routing = entry[-2:]
    if not all(isinstance(x, str) for x in routing):
        return None
    return routing[0], routing[1]


_UNKNOWN = object()  # a delivery tag not resolved yet (None is "resolved, no queue")


ERROR_REASONS = ("redis", "wrong_type", "malformed_message", "malformed_unacked")


class RedisBroker:
    """Reads a Celery Redis broker with read-only scripts; keeps what never changes between scrapes.

    Satisfies broker.Broker. All its state (discovery, tails first seen, unacked routing) is per
    instance: one per target.
    """

    kind = "redis"
    error_reasons = ERROR_REASONS

    def __init__(
        self,
        client: redis.Redis,
        layout: RedisLayout,
        queue_set: QueueSet,
        scan_count: int = 10000,
        clock: Callable[[], float] = time.time,
        message_age: bool = True,
        time_budget: float = 3.0,
        visibility_timeout: float | None = None,
        sentinel_master: str | None = None,
    ) -> None:
        self.client = client
        self.layout = layout
        self.discovery = Discovery(layout, queue_set, scan_count)
        self.message_age = message_age
        self.time_budget = time_budget
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.celery_transport_options: dict[str, Any] = {
            "global_keyprefix": layout.global_keyprefix,
            "sep": layout.sep,
            "priority_steps": list(layout.priority_steps),
        }
        if sentinel_master:
            self.celery_transport_options["master_name"] = sentinel_master
        self._first_seen: dict[bytes, float] = {}  # delivery tag at a list's tail -> when first seen
        self._unacked_queue: dict[bytes, str | None] = {}  # delivery tag -> its queue, fixed for its life
        self._last_error: str | None = None
        self._round_trips = 0  # of the scrape under way

    @classmethod
    def from_config(cls, config: Config, static_queues: Sequence[str]) -> RedisBroker:
        """Raises connection.BrokerUrlError for a URL it cannot serve."""
        client = make_client(config.broker_url, config.redis_timeout, config.sentinel_master)
        return cls(
            client,
            config.layout,
            QueueSet(static_queues, config.queue_grace_period, config.max_queues),
            scan_count=config.discovery_scan_count,
            message_age=config.message_age,
            time_budget=config.redis_timeout,
            visibility_timeout=config.visibility_timeout,
            sentinel_master=config.sentinel_master,
        )

    def close(self) -> None:
        self.client.close()

    def cache_sizes(self) -> dict[str, int]:
        return {
            "tails_first_seen": len(self._first_seen),
            "unacked_routing": len(self._unacked_queue),
            **self.discovery.cache_sizes(),
        }

    def read(self) -> BrokerReading:
        started = time.perf_counter()
        reading = BrokerReading(up=False, priority_steps=self.layout.steps, unattributed_unacked=0)
        self._round_trips = 0
        try:
            self._read(reading)
            reading.up = True
            if self._last_error is not None:
                log.info("broker readable again")
            self._last_error = None
        except (redis.exceptions.RedisError, OSError) as exc:
            reading.errors["redis"] += 1
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:
                log.warning("cannot read the broker: %s", message)
            self._last_error = message
        reading.round_trips = self._round_trips
        reading.duration = time.perf_counter() - started
        return reading

    def _scan_step(self, cursor: bytes, count: int) -> tuple[bytes, BindingSets]:
        """One SCAN step over the binding sets and nothing else (the first discovery pass)."""
        layout = self.layout
        args = [layout.global_keyprefix, layout.sep, ",".join(map(str, layout.steps)), "", cursor, count, 0, "0"]
        reply, trips = SCRAPE(self.client, args)
        self._round_trips += trips
        return reply[0], reply[1]

    def _read(self, reading: BrokerReading) -> None:
        discovery = self.discovery
        if not discovery.first_pass_done:
            discovery.first_pass(self._scan_step, self.time_budget, self.clock())
        layout = self.layout
        steps = layout.steps
        n_steps = len(steps)
        known, joined, odd = discovery.candidates()
        room = discovery.room(len(known))
        args = [
            layout.global_keyprefix,
            layout.sep,
            ",".join(map(str, steps)),
            joined,
            discovery.bindings.cursor,
            discovery.scan_count,
            room,
            "1" if self.message_age else "0",
            *odd,
        ]
        # One round trip: the scrape script and the unacked index (by fetch time, oldest first).
        pipe = self.client.pipeline(transaction=False)
        SCRAPE.queue(pipe, args)
        pipe.execute_command("ZRANGE", layout.unacked_zset_key, 0, -1)
        reply, unacked_tags = pipe.execute(raise_on_error=False)
        self._round_trips += 1
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = SCRAPE.load_and_run(self.client, args)
            self._round_trips += 1
        if isinstance(reply, Exception):
            raise reply
        cursor, binding_sets, new_blob, lengths_blob, tails_blob = reply
        now = self.clock()

        discovered = discovery.found(cursor, binding_sets, new_blob)
        measured = known + discovered[:room]
        lengths = list(map(int, lengths_blob.split(b","))) if lengths_blob else []
        if len(lengths) != len(measured) * n_steps:
            raise redis.exceptions.ResponseError("scrape script returned a reply of the wrong size")
        wrong_type = lengths.count(-1)
        if wrong_type:
            reading.errors["wrong_type"] += wrong_type
            lengths = [x if x >= 0 else 0 for x in lengths]

        ready_age = self._ready_ages(reading, tails_blob, len(measured), now) if self.message_age else None

        unacked_count, unacked_oldest, unattributed = self._read_unacked(reading, unacked_tags, measured)

        totals = list(map(sum, zip(*(lengths[k::n_steps] for k in range(n_steps)), strict=True)))
        busy = [q for q, total in zip(measured, totals, strict=True) if total]
        busy += unacked_count
        keep = discovery.settle(now, measured, busy, discovered)
        reading.queues_dropped = discovery.dropped
        reading.unattributed_unacked = unattributed

        unacked = [unacked_count.get(q, 0) for q in measured]
        unacked_age = [max(now - unacked_oldest[q], 0.0) if q in unacked_oldest else 0.0 for q in measured]
        if len(keep) != len(measured):  # some dropped by --max-queues: keep the others, in order
            index = {q: i for i, q in enumerate(measured)}
            kept = [index[q] for q in keep]
            lengths = [x for i in kept for x in lengths[i * n_steps : (i + 1) * n_steps]]
            totals, unacked, unacked_age = ([col[i] for i in kept] for col in (totals, unacked, unacked_age))
            if ready_age is not None:
                ready_age = [ready_age[i] for i in kept]
            measured = keep
        reading.queues, reading.priority_lengths, reading.ready = measured, lengths, totals
        reading.ready_age, reading.unacked, reading.unacked_age = ready_age, unacked, unacked_age

    def _ready_ages(self, reading: BrokerReading, tails_blob: bytes, n_queues: int, now: float) -> list[float]:
        """Age of each queue's oldest ready message, from the tails of its non-empty lists.

        Stamped messages give their publish time; others the time their delivery tag was first
        seen at a tail. Only tags still at a tail are remembered, so memory stays flat.
        """
        ready_age = [0.0] * n_queues
        if not tails_blob:
            self._first_seen = {}
            return ready_age
        fields = tails_blob.split(b"\t")
        queue_of, tags, published = list(map(int, fields[0::3])), fields[1::3], fields[2::3]
        old = self._first_seen
        # Since-when per tail: the stamp when there is one, else when its tag was first seen
        # (map() over dict.get runs in C: 40,000 tails cost a few milliseconds).
        since: list[float | None] = list(map(old.get, tags, repeat(now, len(tags))))
        self._first_seen = dict(zip(tags, since, strict=True))
        if b"" in self._first_seen:  # a tail without a delivery tag
            del self._first_seen[b""]
            since = [None if not tag else t for tag, t in zip(tags, since, strict=True)]
        if any(published):
            for i, stamp in enumerate(published):
                if stamp:
                    try:
                        value = float(stamp)
                    except ValueError:
                        value = math.nan
                    if math.isfinite(value):
                        since[i] = value
                    elif since[i] is not None:
                        reading.errors["malformed_message"] += 1
        missing = since.count(None)
        if missing:
            reading.errors["malformed_message"] += missing
        oldest: dict[int, float] = {}
        get = oldest.get
        for q, t in zip(queue_of, since, strict=True):
            if t is not None and t < get(q, now):
                oldest[q] = t
        for q, t in oldest.items():
            ready_age[q] = now - t
        return ready_age

    def _read_unacked(
        self, reading: BrokerReading, tags: list[bytes] | Exception, measured: list[str]
    ) -> tuple[Counter[str], dict[str, float], int]:
        if isinstance(tags, redis.exceptions.ResponseError) and "WRONGTYPE" in str(tags):
            reading.errors["wrong_type"] += 1
            return Counter(), {}, 0
        if isinstance(tags, Exception):
            raise tags
        cache = self._unacked_queue
        # map() over dict.get runs in C: 100,000 tags cost a few milliseconds
        queues = list(map(cache.get, tags, repeat(_UNKNOWN, len(tags))))
        if _UNKNOWN in queues:
            unknown = [t for t, q in zip(tags, queues, strict=True) if q is _UNKNOWN]
            self._resolve(reading, unknown, set(measured))
            queues = list(map(cache.get, tags, repeat(_UNKNOWN, len(tags))))
        # Entries acked since the last scrape: forget them, so memory stays flat.
        if len(cache) > len(tags) + 1000:
            self._unacked_queue = {t: q for t, q in zip(tags, queues, strict=True) if q is not _UNKNOWN}
        counts = Counter(queues)
        unattributed = counts.pop(None, 0)
        counts.pop(_UNKNOWN, None)  # acked meanwhile, or left for the next scrape by the time budget
        if not counts:
            return counts, {}, unattributed
        # The index is sorted by fetch time: the first entry of a queue is its oldest.
        first: dict[str, bytes] = {}
        for tag, q in zip(tags, queues, strict=True):
            if q is not None and q is not _UNKNOWN and q not in first:
                first[q] = tag
                if len(first) == len(counts):
                    break
        # Scores are asked for these few only; a tag redelivered keeps its name but not its score.
        scores = self.client.execute_command("ZMSCORE", self.layout.unacked_zset_key, *first.values())
        self._round_trips += 1
        oldest = {q: float(score) for q, score in zip(first, scores, strict=True) if score is not None}
        return counts, oldest, unattributed

    def _resolve(self, reading: BrokerReading, tags: list[bytes], known: set[str]) -> None:
        """Find the queue of unacked entries never seen before, from the routing info they carry."""
        key = self.layout.unacked_hash_key
        deadline = time.monotonic() + self.time_budget
        for start in range(0, len(tags), RESOLVE_CHUNK):
            if start and time.monotonic() > deadline:
                log.debug("%d new unacked entries left for the next scrape", len(tags) - start)
                return
            chunk = tags[start : start + RESOLVE_CHUNK]
            tails, trips = UNACKED_TAILS(self.client, [key, b"\n".join(chunk)])
            self._round_trips += trips
            for tag, tail in zip(chunk, tails, strict=True):
                if not tail:
                    continue  # acked between the two calls; it will not be listed next time
                queue = None
                routing = unacked_routing(tail)
                if routing is None:
                    reading.errors["malformed_unacked"] += 1
                else:
                    queue = self.discovery.bindings.route(routing[0], routing[1], known)
                self._unacked_queue[tag] = queue
