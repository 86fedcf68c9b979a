"""One scrape's reading of the broker: lengths, oldest ready message, unacked, in constant round trips."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

import redis

from celery_queue_exporter.discovery import BindingTable, QueueSet
from celery_queue_exporter.redis_layout import RedisLayout
from celery_queue_exporter.scripts import SCRAPE, UNACKED_TAILS

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


@dataclass
class Reading:
    """What one scrape found. Per-queue lists are parallel to `queues`; `lengths` is queue-major."""

    up: bool
    steps: tuple[int, ...]
    queues: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    ready_age: list[float] = field(default_factory=list)
    unacked: list[int] = field(default_factory=list)
    unacked_age: list[float] = field(default_factory=list)
    unattributed_unacked: int = 0
    queues_dropped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0
    duration: float = 0.0


class BrokerReader:
    """Reads a Celery Redis broker with read-only scripts; keeps what never changes between scrapes."""

    def __init__(
        self,
        client: redis.Redis,
        layout: RedisLayout,
        queue_set: QueueSet,
        scan_count: int = 10000,
        clock: Callable[[], float] = time.time,
        message_age: bool = True,
        time_budget: float = 3.0,
    ) -> None:
        self.client = client
        self.layout = layout
        self.queue_set = queue_set
        self.bindings = BindingTable(layout)
        self.scan_count = scan_count
        self.message_age = message_age
        self.time_budget = time_budget
        self.clock = clock
        self._first_seen: dict[bytes, float] = {}  # delivery tag at a list's tail -> when first seen
        self._unacked_queue: dict[bytes, str | None] = {}  # delivery tag -> its queue, fixed for its life
        self._last_error: str | None = None
        self._sent: tuple[list[str], tuple[list[str], str, list[str]]] | None = None

    def read(self) -> Reading:
        started = time.perf_counter()
        reading = Reading(up=False, steps=self.layout.steps)
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
        reading.duration = time.perf_counter() - started
        return reading

    def _first_discovery(self, reading: Reading) -> None:
        """Complete one SCAN pass before the first report, so it lists every queue, within the budget."""
        deadline = time.monotonic() + self.time_budget
        layout = self.layout
        steps = ",".join(map(str, layout.steps))
        while self.bindings.passes_completed == 0 and time.monotonic() < deadline:
            args = [layout.global_keyprefix, layout.sep, steps, "", self.bindings.cursor, self.scan_count, 0, "0"]
            reply, trips = SCRAPE(self.client, args)
            reading.round_trips += trips
            self.bindings.update(reply[0], reply[1])

    def _read(self, reading: Reading) -> None:
        if self.bindings.passes_completed == 0:
            self._first_discovery(reading)
            self.queue_set.settle(self.clock(), [], set(self.bindings.queues()), ())
        layout = self.layout
        steps = layout.steps
        n_steps = len(steps)
        known, joined, odd = self._candidates()
        room = max(self.queue_set.max_queues - len(known), 0)
        args = [
            layout.global_keyprefix,
            layout.sep,
            ",".join(map(str, steps)),
            joined,
            self.bindings.cursor,
            self.scan_count,
            room,
            "1" if self.message_age else "0",
            *odd,
        ]
        # One round trip: the scrape script and the unacked index (by fetch time, oldest first).
        pipe = self.client.pipeline(transaction=False)
        SCRAPE.queue(pipe, args)
        pipe.execute_command("ZRANGE", layout.unacked_zset_key, 0, -1)
        reply, unacked_tags = pipe.execute(raise_on_error=False)
        reading.round_trips += 1
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = SCRAPE.load_and_run(self.client, args)
            reading.round_trips += 1
        if isinstance(reply, Exception):
            raise reply
        cursor, binding_sets, new_blob, lengths_blob, tails_blob = reply
        now = self.clock()

        self.bindings.update(cursor, binding_sets)
        discovered = [_text(q) for q in new_blob.split(b"\n")] if new_blob else []
        measured = known + discovered[:room]
        lengths = list(map(int, lengths_blob.split(b","))) if lengths_blob else []
        if len(lengths) != len(measured) * n_steps:
            raise redis.exceptions.ResponseError("scrape script returned a reply of the wrong size")
        wrong_type = lengths.count(-1)
        if wrong_type:
            reading.errors["wrong_type"] += wrong_type
            lengths = [x if x >= 0 else 0 for x in lengths]

        ready_age = self._ready_ages(reading, tails_blob, len(measured), now)

        unacked_count, unacked_oldest, unattributed = self._read_unacked(reading, unacked_tags, measured)

        totals = list(map(sum, zip(*(lengths[k::n_steps] for k in range(n_steps)), strict=True)))
        present = set(self.bindings.queues())
        present.update(q for q, total in zip(measured, totals, strict=True) if total)
        present.update(unacked_count)
        keep = self.queue_set.settle(now, measured, present, discovered)
        reading.queues_dropped = self.queue_set.dropped
        reading.unattributed_unacked = unattributed

        unacked = [unacked_count.get(q, 0) for q in measured]
        unacked_age = [max(now - unacked_oldest[q], 0.0) if q in unacked_oldest else 0.0 for q in measured]
        if len(keep) == len(measured):  # the usual case: nothing dropped, same order
            reading.queues, reading.lengths, reading.totals = measured, lengths, totals
            reading.ready_age, reading.unacked, reading.unacked_age = ready_age, unacked, unacked_age
            return
        index = {q: i for i, q in enumerate(measured)}
        for q in keep:
            i = index[q]
            reading.queues.append(q)
            reading.lengths.extend(lengths[i * n_steps : (i + 1) * n_steps])
            reading.totals.append(totals[i])
            reading.ready_age.append(ready_age[i])
            reading.unacked.append(unacked[i])
            reading.unacked_age.append(unacked_age[i])

    def _ready_ages(self, reading: Reading, tails_blob: bytes, n_queues: int, now: float) -> list[float]:
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

    def _candidates(self) -> tuple[list[str], str, list[str]]:
        """Queues to measure, in the order the script measures them, and how to send them.

        Names go "\n"-joined (one argument is far cheaper than thousands); the odd name holding
        a newline goes as an argument of its own. Kept while the queue set does not change.
        """
        candidates = self.queue_set.candidates()
        if self._sent is not None and self._sent[0] == candidates:
            return self._sent[1]
        plain = [q for q in candidates if "\n" not in q]
        odd = [q for q in candidates if "\n" in q] if len(plain) != len(candidates) else []
        self._sent = (candidates, (plain + odd, "\n".join(plain), odd))
        return self._sent[1]

    def _read_unacked(
        self, reading: Reading, tags: list[bytes] | Exception, measured: list[str]
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
        reading.round_trips += 1
        oldest = {q: float(score) for q, score in zip(first, scores, strict=True) if score is not None}
        return counts, oldest, unattributed

    def _resolve(self, reading: Reading, tags: list[bytes], known: set[str]) -> None:
        """Find the queue of unacked entries never seen before, from the routing info they carry."""
        key = self.layout.unacked_hash_key
        deadline = time.monotonic() + self.time_budget
        for start in range(0, len(tags), RESOLVE_CHUNK):
            if start and time.monotonic() > deadline:
                log.debug("%d new unacked entries left for the next scrape", len(tags) - start)
                return
            chunk = tags[start : start + RESOLVE_CHUNK]
            tails, trips = UNACKED_TAILS(self.client, [key, b"\n".join(chunk)])
            reading.round_trips += trips
            for tag, tail in zip(chunk, tails, strict=True):
                if not tail:
                    continue  # acked between the two calls; it will not be listed next time
                queue = None
                routing = unacked_routing(tail)
                if routing is None:
                    reading.errors["malformed_unacked"] += 1
                else:
                    queue = self.bindings.route(routing[0], routing[1], known)
                self._unacked_queue[tag] = queue


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
