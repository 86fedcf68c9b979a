"""Which queues to report: bindings found in Redis, configured queues, and a grace period for the gone.

`Discovery` is one broker's discovery state (its binding table, its queue set, the SCAN cursor);
each scrape advances the SCAN by one step in the same pipeline as the measurement.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable

from celery_queue_exporter.redis_layout import Binding, RedisLayout, is_internal_queue

log = logging.getLogger(__name__)

BindingSets = Iterable[tuple[bytes, Iterable[bytes]]]  # (binding set key, its members), as SCAN found them


class BindingTable:
    """kombu's binding sets as last read, filled by an incremental SCAN spread over scrapes.

    A binding set not seen during a whole SCAN pass is forgotten when that pass ends.
    """

    def __init__(self, layout: RedisLayout) -> None:
        self.layout = layout
        self.by_exchange: dict[str, list[Binding]] = {}
        self._raw: dict[bytes, tuple[bytes, ...]] = {}  # binding key -> members as last parsed
        self._key_exchange: dict[bytes, str] = {}
        self._seen_this_pass: set[bytes] = set()
        self._queues: set[str] | None = None
        self.cursor = b"0"
        self.passes_completed = 0

    def update(self, cursor: bytes, sets: Iterable[tuple[bytes, Iterable[bytes]]]) -> None:
        prefix = self.layout.binding_key_prefix.encode("utf-8", "surrogateescape")
        for key, members in sets:
            if not key.startswith(prefix):
                continue
            self._seen_this_pass.add(key)
            raw = tuple(sorted(members))
            if self._raw.get(key) == raw:
                continue  # bindings rarely change: parse them only when they do
            exchange = _text(key[len(prefix) :])
            self._raw[key] = raw
            self._key_exchange[key] = exchange
            self.by_exchange[exchange] = [
                b for m in raw if (b := self.layout.parse_binding(exchange, _text(m))) is not None
            ]
            self._queues = None
        self.cursor = cursor
        if cursor in (b"0", "0", 0):
            for key in list(self._raw):
                if key not in self._seen_this_pass:
                    del self._raw[key]
                    self.by_exchange.pop(self._key_exchange.pop(key), None)
                    self._queues = None
            self._seen_this_pass = set()
            self.passes_completed += 1

    def seen_keys(self) -> list[bytes]:
        return list(self._raw)

    def members(self, key: bytes) -> tuple[bytes, ...] | None:
        """The members of a binding set as last read, None if never read."""
        return self._raw.get(key)

    def queues(self) -> set[str]:
        if self._queues is None:
            self._queues = {
                b.queue for bindings in self.by_exchange.values() for b in bindings if not is_internal_queue(b.queue)
            }
        return self._queues

    def route(self, exchange: str, routing_key: str, known_queues: set[str] | dict[str, object]) -> str | None:
        """The queue a message published to (exchange, routing_key) went to, as kombu's lookup does."""
        if exchange == "":
            return routing_key or None
        bindings = self.by_exchange.get(exchange)
        if bindings:
            exact = {b.queue for b in bindings if b.routing_key == routing_key}
            if len(exact) == 1:
                return exact.pop()
            topic = {b.queue for b in bindings if _topic_match(b.routing_key, routing_key)}
            if len(topic) == 1:
                return topic.pop()
            if len({b.queue for b in bindings}) == 1:  # fanout, or a single-queue exchange
                return bindings[0].queue
        # Celery's automatic queues use an exchange and routing key named after the queue.
        if routing_key in known_queues:
            return routing_key
        if exchange in known_queues:
            return exchange
        return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _topic_match(pattern: str, routing_key: str) -> bool:
    if "*" not in pattern and "#" not in pattern:
        return False
    # AMQP topic: * is one word, # is zero or more words; good enough through fnmatch on words.
    regex_words = pattern.replace("#", "*")
    return fnmatch.fnmatchcase(routing_key, regex_words)


class QueueSet:
    """Queues to report: configured ones always, discovered ones until gone for `grace` seconds."""

    def __init__(self, static: Iterable[str], grace: float, max_queues: int) -> None:
        self.static = [q for q in dict.fromkeys(static) if q]
        self._static_set = set(self.static)
        self.grace = grace
        self.max_queues = max_queues
        self.last_present: dict[str, float] = {}
        self.dropped = 0
        self._warned_cap = False
        self._wanted: list[str] | None = None  # static + sorted discovered, kept until the set changes

    def _wanted_names(self) -> list[str]:
        if self._wanted is None:
            self._wanted = self.static + sorted(q for q in self.last_present if q not in self._static_set)
        return self._wanted

    def candidates(self) -> list[str]:
        """Queues to measure in the next scrape (configured first, then known ones, capped)."""
        return self._wanted_names()[: self.max_queues]

    def settle(self, now: float, measured: list[str], present: set[str], discovered: Iterable[str]) -> list[str]:
        """Record what was present in this scrape; return the queues to report, capped."""
        last_present = self.last_present
        before = len(last_present)
        for q in present:
            if q not in last_present and is_internal_queue(q):
                continue
            last_present[q] = now
        for q in discovered:
            if not is_internal_queue(q):
                last_present.setdefault(q, now)
        changed = len(last_present) != before
        if self.grace >= 0:
            deadline = now - self.grace
            gone = [q for q, seen in last_present.items() if seen < deadline]
            for q in gone:
                del last_present[q]
            changed = changed or bool(gone)
        if changed:
            self._wanted = None
        wanted = self._wanted_names()
        self.dropped = max(len(wanted) - self.max_queues, 0)
        if self.dropped and not self._warned_cap:
            self._warned_cap = True
            log.warning(
                "more queues than --max-queues=%d: %d not reported (see celery_exporter_queues_dropped); "
                "raise --max-queues to report them all",
                self.max_queues,
                self.dropped,
            )
        if not self.dropped and len(measured) == len(wanted):
            return measured
        keep = set(wanted[: self.max_queues])
        return [q for q in measured if q in keep]


class Discovery:
    """One Redis broker's queues: bindings read by an incremental SCAN, configured queues, the cap.

    Each scrape does one SCAN step (redis_broker.py) and `settle()` takes in what it found.
    """

    def __init__(self, layout: RedisLayout, queue_set: QueueSet, scan_count: int) -> None:
        self.bindings = BindingTable(layout)
        self.queue_set = queue_set
        self.scan_count = scan_count

    @property
    def first_pass_done(self) -> bool:
        return self.bindings.passes_completed > 0

    def first_pass(self, scan: Callable[[bytes, int], tuple[bytes, BindingSets]], budget: float, now: float) -> None:
        """Complete one SCAN pass before the first report, so it lists every queue, within `budget` s.

        `scan(cursor, count)` runs one SCAN step over the binding sets and returns (cursor, sets)."""
        deadline = time.monotonic() + budget
        while self.bindings.passes_completed == 0 and time.monotonic() < deadline:
            cursor, sets = scan(self.bindings.cursor, self.scan_count)
            self.bindings.update(cursor, sets)
        self.queue_set.settle(now, [], set(self.bindings.queues()), ())

    def settle(self, now: float, measured: list[str], busy: Iterable[str], discovered: Iterable[str]) -> list[str]:
        """The queues to report out of `measured`, given those holding messages (`busy`)."""
        present = set(self.bindings.queues())
        present.update(busy)
        return self.queue_set.settle(now, measured, present, discovered)

    @property
    def dropped(self) -> int:
        return self.queue_set.dropped

    def cache_sizes(self) -> dict[str, int]:
        return {
            "binding_sets": len(self.bindings.by_exchange),
            "queues_seen": len(self.queue_set.last_present),
        }
