"""The Redis broker kind: one scrape's reading of a kombu Redis broker (lengths per priority list,
oldest ready message, unacked per queue) in one pipelined round trip of small plain commands.

Redis runs one command at a time, so a scrape never sends one that holds it for long: one LLEN
and one LINDEX per priority list (about 1 us each), the unacked index in ZRANGE slices, one
bounded SCAN step; all pipelined on one connection, so the round trips stay constant in N. Lists
that did not change since they were last read are not read again (list_cache.py). New unacked
entries are resolved to their queue once, by a read-only script returning only their routing
("scripts" mode) or, when Redis refuses scripts, by HMGET of whole entries ("plain" mode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import redis

from celery_queue_exporter.broker import BrokerReading
from celery_queue_exporter.connection import make_client
from celery_queue_exporter.discovery import BindingSets, Discovery, QueueSet
from celery_queue_exporter.list_cache import WRONG_TYPE, ListCache
from celery_queue_exporter.redis_layout import BINDING_PREFIX, RedisLayout, tail_fields, unacked_routing_part
from celery_queue_exporter.resp import RespConnection, pack
from celery_queue_exporter.scripts import UNACKED_TAILS_LUA, UNACKED_TAILS_SHA

if TYPE_CHECKING:
    from celery_queue_exporter.config import Config

log = logging.getLogger(__name__)

# Bounds on what one command may do, so that none holds Redis for more than about a millisecond
# (measured on redis-server 7.0: ZRANGE ~0.05 us an entry, HGET+search in Lua a few us an entry).
ZRANGE_SLICE = 10000  # unacked index entries per ZRANGE
ZMSCORE_SLICE = 500  # scores per ZMSCORE (each is formatted as text: ~3 us)
RESOLVE_BATCH = 100  # unacked entries per script call or HMGET
RESOLVE_PIPELINE = 20000  # unacked entries resolved per round trip
SCRIPTS, PLAIN = "scripts", "plain"
# Asked once per connection: NOSCRIPT (or 1) means this user may run read-only scripts.
PROBE_SHA = hashlib.sha1(b"#!lua flags=no-writes\nreturn 1").hexdigest()
READ_MODES = (SCRIPTS, PLAIN)


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
    """Reads a Celery Redis broker with pipelined plain commands; keeps what did not change.

    Satisfies broker.Broker. All its state (discovery, lists as last read, unacked routing, the
    connection) is per instance: one per target.
    """

    kind = "redis"
    error_reasons = ERROR_REASONS

    def __init__(
        self,
        client: redis.Redis,
        layout: RedisLayout,
        queue_set: QueueSet,
        scan_count: int = 1000,
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
        self.read_mode: str | None = None  # SCRIPTS or PLAIN, known once connected
        self.lists = ListCache()
        self._unacked_queue: dict[bytes, str | None] = {}  # delivery tag -> its queue, fixed for its life
        self._unacked_tags: list[bytes] = []  # the unacked index as last read
        self._unacked_dirty = True
        self._binding_dirty: set[bytes] = set()  # binding sets to read again
        self._conn: RespConnection | None = None
        self._script_cached = False  # the connection's Redis has UNACKED_TAILS cached
        self._keys: tuple[list[str], list[bytes]] = ([], [])  # queues measured -> their list keys
        self._read_cmd: dict[bytes, bytes] = {}  # list key -> its packed LLEN (+ LINDEX)
        self._zset_key = self._key(layout.unacked_zset_key)
        self._hash_key = self._key(layout.unacked_hash_key)
        self._scan_match = _glob_escape(self._key(layout.global_keyprefix + BINDING_PREFIX)) + b"*"
        self._last_error: str | None = None
        self._logged: set[str] = set()
        self._round_trips = 0  # of the scrape under way
        self._deadline = 0.0

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

    @staticmethod
    def _key(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    def close(self) -> None:
        self._disconnect()
        self.client.close()

    def cache_sizes(self) -> dict[str, int]:
        return {
            "tails_first_seen": len(self.lists.tag),
            "lists_known": len(self.lists.keys),
            "unacked_routing": len(self._unacked_queue),
            **self.discovery.cache_sizes(),
        }

    def read(self) -> BrokerReading:
        started = time.perf_counter()
        reading = BrokerReading(up=False, priority_steps=self.layout.steps, unattributed_unacked=0)
        self._round_trips = 0
        self._deadline = time.monotonic() + self.time_budget
        try:
            self._read(reading)
            reading.up = True
            if self._last_error is not None:
                log.info("broker readable again")
            self._last_error = None
        except (redis.exceptions.RedisError, OSError) as exc:
            self._disconnect()  # the connection may be out of step: start afresh
            reading.errors["redis"] += 1
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:
                log.warning("cannot read the broker: %s", message)
            self._last_error = message
        reading.read_mode = self.read_mode
        reading.round_trips = self._round_trips
        reading.duration = time.perf_counter() - started
        return reading

    # --- the connection -------------------------------------------------------------------------

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> RespConnection:
        if self._conn is not None:
            return self._conn
        conn = RespConnection(self.client, self.time_budget)
        refused = conn.track()
        (probe,) = conn.execute(pack("EVALSHA_RO", PROBE_SHA, 0), 1)
        self._round_trips += 2
        self._script_cached = False
        # NOSCRIPT: allowed, not cached. NOPERM, an unknown (renamed) command, a proxy's refusal: plain.
        self._set_mode(not isinstance(probe, Exception) or str(probe).startswith("NOSCRIPT"), probe)
        self._once(
            f"tracking-{refused is None}",
            "Redis client-side caching on: lists are read again only when they change"
            if refused is None
            else f"Redis client-side caching refused ({refused}): every list is read every scrape",
        )
        self.lists.forget_all()
        self._unacked_dirty = True
        self._binding_dirty.update(k for k in self._binding_keys())
        self._conn = conn
        return conn

    def _set_mode(self, scripts_ok: bool, why: object) -> None:
        self.read_mode = SCRIPTS if scripts_ok else PLAIN
        how = "and a read-only script for new unacked entries" if scripts_ok else f"only (scripts refused: {why})"
        self._once(f"mode-{self.read_mode}", f"reading Redis in {self.read_mode} mode: pipelined plain commands {how}")

    def _once(self, what: str, message: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.info(message)

    def _execute(self, request: bytes, count: int) -> list[Any]:
        conn = self._connection()
        replies = conn.execute(request, count, self._deadline)
        self._round_trips += 1
        return replies

    # --- discovery ------------------------------------------------------------------------------

    def _binding_keys(self) -> list[bytes]:
        return self.discovery.bindings.seen_keys()

    def _scan_step(self, cursor: bytes, count: int) -> tuple[bytes, BindingSets]:
        """One SCAN step over the binding sets, with their members (the first discovery pass)."""
        self._connection()
        dirty = sorted(self._binding_dirty)
        request = pack("SCAN", cursor, "MATCH", self._scan_match, "COUNT", count) + b"".join(
            pack("SMEMBERS", k) for k in dirty
        )
        replies = self._execute(request, 1 + len(dirty))
        self._binding_dirty.difference_update(dirty)  # a change since is in conn.pushes: dirty again
        return self._scanned(replies[0], dict(zip(dirty, replies[1:], strict=True)))

    def _scanned(self, scan: Any, read: dict[bytes, Any]) -> tuple[bytes, BindingSets]:
        """The binding sets of a SCAN step: members just read, else as last read, else read now."""
        if isinstance(scan, Exception):
            raise scan
        cursor, found = scan
        bindings = self.discovery.bindings
        new = [k for k in found if k not in read and bindings.members(k) is None]
        if new:  # a binding set never read: read it now, so a new queue shows in this scrape
            read.update(zip(new, self._execute(b"".join(pack("SMEMBERS", k) for k in new), len(new)), strict=True))
        sets = []
        for key in dict.fromkeys([*found, *read]):
            members = read.get(key)
            if members is None:
                members = bindings.members(key) or ()
            elif isinstance(members, Exception):
                members = ()  # not a set: no binding
            sets.append((key, members))
        if self._conn is not None and not self._conn.tracking:
            self._binding_dirty.update(found)  # no change notices: read them again next time
        return cursor, sets

    # --- one scrape -----------------------------------------------------------------------------

    def _list_keys(self, queues: list[str]) -> list[bytes]:
        if queues != self._keys[0]:
            layout, key = self.layout, self._key
            keys = [key(layout.list_key(q, step)) for q in queues for step in layout.steps]
            self._keys = (queues, keys)
            wanted = set(keys)
            self._read_cmd = {k: v for k, v in self._read_cmd.items() if k in wanted}
            self.lists.use_keys(keys)
        return self._keys[1]

    def _read_request(self, key: bytes) -> bytes:
        cmd = self._read_cmd.get(key)
        if cmd is None:
            cmd = pack("LLEN", key)
            if self.message_age:
                cmd += pack("LINDEX", key, -1)
            self._read_cmd[key] = cmd
        return cmd

    def _read(self, reading: BrokerReading) -> None:
        discovery = self.discovery
        conn = self._connection()
        if not discovery.first_pass_done:
            discovery.first_pass(self._scan_step, self.time_budget, self.clock())
        conn.drain()
        self.lists.changed(conn.pushes, None)
        self._binding_changes(conn.pushes, None)
        conn.pushes.clear()

        queues = discovery.queue_set.candidates()
        keys = self._list_keys(queues)
        to_read = self.lists.to_read(conn.tracking)
        per_key = 2 if self.message_age else 1

        # One pipeline: the SCAN step and changed binding sets, the unacked index, changed lists.
        dirty_bindings = sorted(self._binding_dirty)
        parts = [pack("SCAN", discovery.bindings.cursor, "MATCH", self._scan_match, "COUNT", discovery.scan_count)]
        parts += [pack("SMEMBERS", k) for k in dirty_bindings]
        zset_slices = 0
        if self._unacked_dirty or not conn.tracking:
            zset_slices = len(self._unacked_tags) // ZRANGE_SLICE + 1
            parts += [
                pack("ZRANGE", self._zset_key, i * ZRANGE_SLICE, (i + 1) * ZRANGE_SLICE - 1) for i in range(zset_slices)
            ]
        first_list = len(parts)
        read_request = self._read_request
        parts += map(read_request, to_read)
        replies = self._execute(b"".join(parts), first_list + per_key * len(to_read))
        now = self.clock()

        # Invalidations that arrived during the pipeline: a key read before one changed after.
        pushes, conn.pushes = conn.pushes, []
        first_read: dict[bytes, int] | None = None
        if pushes:
            first_read = {k: first_list + per_key * i for i, k in enumerate(to_read)}
            first_read.update((k, 1 + i) for i, k in enumerate(dirty_bindings))
            if zset_slices:
                first_read[self._zset_key] = 1 + len(dirty_bindings)
        self._store_lists(reading, to_read, replies[first_list:], per_key, now)
        self._binding_dirty.difference_update(dirty_bindings)
        if zset_slices:
            self._unacked_dirty = False
            self._unacked_tags = self._unacked_index(reading, replies[1 + len(dirty_bindings) : first_list])
        self.lists.changed(pushes, first_read)
        self._binding_changes(pushes, first_read)

        cursor, sets = self._scanned(
            replies[0], dict(zip(dirty_bindings, replies[1 : 1 + len(dirty_bindings)], strict=True))
        )
        discovery.bindings.update(cursor, sets)
        # Queues of binding sets just found are measured at once (one more round trip, rarely).
        listed = set(queues)
        room = discovery.queue_set.max_queues - len(queues)
        new = sorted(q for q in discovery.bindings.queues() if q not in listed)[: max(room, 0)]
        if new:
            queues = queues + new
            keys = self._list_keys(queues)
            fresh = self.lists.unknown()
            replies = self._execute(b"".join(map(read_request, fresh)), per_key * len(fresh))
            self._store_lists(reading, fresh, replies, per_key, now)

        lengths, since = list(self.lists.lengths), self.lists.since
        wrong_type = lengths.count(WRONG_TYPE)
        if wrong_type:
            reading.errors["wrong_type"] += wrong_type
            lengths = [x if x >= 0 else 0 for x in lengths]
        malformed = len(self.lists.malformed)
        if malformed and self.message_age:
            reading.errors["malformed_message"] += malformed
        n_steps = len(self.layout.steps)
        totals = list(map(sum, zip(*(lengths[k::n_steps] for k in range(n_steps)), strict=True)))
        ready_age = None
        if self.message_age:
            oldest = map(min, *(since[k::n_steps] for k in range(n_steps))) if keys else iter(())
            ready_age = [now - t if t < now else 0.0 for t in oldest]

        unacked_count, unacked_oldest, unattributed = self._read_unacked(reading, self._unacked_tags, queues)

        busy = [q for q, total in zip(queues, totals, strict=True) if total]
        busy += unacked_count
        measured = queues
        keep = discovery.settle(now, measured, busy, new)
        reading.queues_dropped = discovery.dropped
        reading.unattributed_unacked = unattributed

        unacked = [unacked_count.get(q, 0) for q in measured]
        unacked_age = [max(now - unacked_oldest[q], 0.0) if q in unacked_oldest else 0.0 for q in measured]
        if len(keep) != len(measured):  # gone past their grace period, or over --max-queues: keep the others
            index = {q: i for i, q in enumerate(measured)}
            kept = [index[q] for q in keep]
            lengths = [x for i in kept for x in lengths[i * n_steps : (i + 1) * n_steps]]
            totals, unacked, unacked_age = ([col[i] for i in kept] for col in (totals, unacked, unacked_age))
            if ready_age is not None:
                ready_age = [ready_age[i] for i in kept]
            measured = keep
        reading.queues, reading.priority_lengths, reading.ready = measured, lengths, totals
        reading.ready_age, reading.unacked, reading.unacked_age = ready_age, unacked, unacked_age

    def _binding_changes(self, pushes: Sequence[Any], first_read: dict[bytes, int] | None) -> None:
        bindings = self.discovery.bindings
        for push in pushes:
            if push.keys is None:
                self._binding_dirty.update(self._binding_keys())
                self._unacked_dirty = True
                continue
            for key in push.keys:
                if first_read is not None and push.position <= first_read.get(key, -1):
                    continue
                if key == self._zset_key:
                    self._unacked_dirty = True
                elif bindings.members(key) is not None:
                    self._binding_dirty.add(key)

    def _store_lists(
        self, reading: BrokerReading, keys: list[bytes], replies: list[Any], per_key: int, now: float
    ) -> None:
        store = self.lists.store
        lengths = replies[0::per_key]
        tails = replies[1::per_key] if per_key == 2 else repeat(None, len(keys))
        for key, length, tail in zip(keys, lengths, tails, strict=True):
            if type(length) is not int:
                if not isinstance(length, redis.exceptions.ResponseError) or "WRONGTYPE" not in str(length):
                    raise length if isinstance(length, Exception) else redis.exceptions.ResponseError(repr(length))
                length, tail = WRONG_TYPE, None
            if type(tail) is bytes:
                tag, published = tail_fields(tail)
            else:
                tag = published = b""
            store(key, length, tag, published, now)

    def _unacked_index(self, reading: BrokerReading, slices: list[Any]) -> list[bytes]:
        """The unacked index from its ZRANGE slices, in fetch order; read on if the last one was full.

        Slices are separate commands: an entry acked between two of them shifts the next one, so
        one entry may be missed; a duplicate (an entry added before the boundary) is dropped."""
        tags: list[bytes] = []
        for part in slices:
            if isinstance(part, redis.exceptions.ResponseError) and "WRONGTYPE" in str(part):
                reading.errors["wrong_type"] += 1
                return []
            if isinstance(part, Exception):
                raise part
            tags += part
        while len(tags) == len(slices) * ZRANGE_SLICE:  # it grew past what was asked: read on
            start = len(slices) * ZRANGE_SLICE
            more = self._execute(
                b"".join(
                    pack("ZRANGE", self._zset_key, start + i * ZRANGE_SLICE, start + (i + 1) * ZRANGE_SLICE - 1)
                    for i in range(len(slices))
                ),
                len(slices),
            )
            for part in more:
                if isinstance(part, Exception):
                    raise part
                tags += part
            slices = slices + more
        return list(dict.fromkeys(tags)) if len(slices) > 1 else tags

    def _read_unacked(
        self, reading: BrokerReading, tags: list[bytes], measured: list[str]
    ) -> tuple[Counter[str], dict[str, float], int]:
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
        tags_first = list(first.values())
        slices = [tags_first[i : i + ZMSCORE_SLICE] for i in range(0, len(tags_first), ZMSCORE_SLICE)]
        replies = self._execute(b"".join(pack("ZMSCORE", self._zset_key, *t) for t in slices), len(slices))
        scores = [score for reply in self._checked(replies) for score in reply]
        oldest = {q: float(score) for q, score in zip(first, scores, strict=True) if score is not None}
        return counts, oldest, unattributed

    def _resolve(self, reading: BrokerReading, tags: list[bytes], known: set[str]) -> None:
        """Find the queue of unacked entries never seen before, from the routing info they carry."""
        for start in range(0, len(tags), RESOLVE_PIPELINE):
            if start and time.monotonic() > self._deadline - self.time_budget / 2:
                log.debug("%d new unacked entries left for the next scrape", len(tags) - start)
                return
            chunk = tags[start : start + RESOLVE_PIPELINE]
            batches = [chunk[i : i + RESOLVE_BATCH] for i in range(0, len(chunk), RESOLVE_BATCH)]
            parts = self._resolve_parts(batches)
            for tag, part in zip(chunk, parts, strict=True):
                if not part:
                    continue  # acked between the two calls; it will not be listed next time
                queue = None
                routing = unacked_routing(part)
                if routing is None:
                    reading.errors["malformed_unacked"] += 1
                else:
                    queue = self.discovery.bindings.route(routing[0], routing[1], known)
                self._unacked_queue[tag] = queue

    def _resolve_parts(self, batches: list[list[bytes]]) -> list[bytes]:
        """The routing part of each entry (b"" when gone): by script, or whole entries by HMGET."""
        if self.read_mode == PLAIN:
            replies = self._execute(b"".join(pack("HMGET", self._hash_key, *b) for b in batches), len(batches))
            return [unacked_routing_part(e) if e else b"" for r in self._checked(replies) for e in r]
        for attempt in range(2):
            requests = []
            for i, batch in enumerate(batches):
                args = (0, self._hash_key, b"\n".join(batch))
                if i == 0 and not self._script_cached:
                    requests.append(pack("EVAL_RO", UNACKED_TAILS_LUA, *args))
                else:
                    requests.append(pack("EVALSHA_RO", UNACKED_TAILS_SHA, *args))
            replies = self._execute(b"".join(requests), len(batches))
            self._script_cached = True
            errors = [str(r) for r in replies if isinstance(r, Exception)]
            if any(e.startswith("NOPERM") for e in errors):  # allowed EVALSHA_RO but not EVAL_RO, say
                self._set_mode(False, errors[0])
                return self._resolve_parts(batches)
            if attempt == 0 and any(e.startswith("NOSCRIPT") for e in errors):
                self._script_cached = False  # the script cache was flushed meanwhile
                continue
            break
        return [part or b"" for r in self._checked(replies) for part in r]

    @staticmethod
    def _checked(replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def _glob_escape(pattern: bytes) -> bytes:
    """`pattern` matched literally by SCAN MATCH."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", pattern)
