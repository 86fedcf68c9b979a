"""What the exporter knows of each priority list between scrapes: its length and its tail (the
oldest message), kept until Redis says the key changed.

The scrape's connection has Redis' client-side caching on (CLIENT TRACKING, RESP3): for every key
it reads, Redis pushes one invalidation when any client changes that key. A list nobody touched
since it was last read is not read again; a list that changed (or whose change notice is still
on its way when the scrape begins) is. Without tracking every list is read every scrape.
As a safety net every list is also read again at least once every REFRESH_SCRAPES scrapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from celery_queue_exporter.resp import Invalidation

REFRESH_SCRAPES = 64
WRONG_TYPE = -1  # the length of a key that is not a list
NO_TAIL = math.inf  # "since" of an empty list, or of a tail without a usable delivery tag or stamp


class ListCache:
    """Columns parallel to the keys measured: length, and since when the tail waits (its
    x-published-at stamp, else when this exporter first saw it at the tail); the tail's tag of
    non-empty lists."""

    def __init__(self) -> None:
        self.keys: Sequence[bytes] = ()
        self.lengths: list[int] = []
        self.since: list[float] = []
        self.tag: dict[bytes, bytes] = {}  # non-empty lists only
        self.malformed: set[bytes] = set()  # non-empty lists whose tail gives no age
        self.dirty: set[bytes] = set()  # keys to read again
        self._pos: dict[bytes, int] = {}
        self._unknown: set[bytes] = set()  # keys never read
        self._refresh_at = 0

    def forget_all(self) -> None:
        """A new connection: nothing read before can be trusted to be current."""
        self.dirty.update(self.keys)

    def use_keys(self, keys: Sequence[bytes]) -> None:
        """The keys measured from now on; what is kept of others is dropped (memory stays flat)."""
        old = {k: (self.lengths[i], self.since[i]) for k, i in self._pos.items()}
        self.keys = keys
        self._pos = {k: i for i, k in enumerate(keys)}
        self.lengths = [old[k][0] if k in old else 0 for k in keys]
        self.since = [old[k][1] if k in old else NO_TAIL for k in keys]
        self._unknown = {k for k in keys if k not in old}
        wanted = self._pos
        self.tag = {k: v for k, v in self.tag.items() if k in wanted}
        self.malformed = {k for k in self.malformed if k in wanted}
        self.dirty = {k for k in self.dirty if k in wanted}

    def unknown(self) -> list[bytes]:
        return [k for k in self.keys if k in self._unknown]

    def to_read(self, tracking: bool) -> list[bytes]:
        """The keys this scrape must read: changed, never read, or due for their periodic refresh."""
        keys = self.keys
        if not tracking:
            return list(keys)
        share = -(-len(keys) // REFRESH_SCRAPES)
        start = self._refresh_at % max(len(keys), 1)
        self._refresh_at = start + share
        read = set(keys[start : start + share])
        read.update(keys[: max(start + share - len(keys), 0)])
        read |= self.dirty
        read |= self._unknown
        return list(read)

    def changed(self, pushes: Iterable[Invalidation], first_read: dict[bytes, int] | None) -> None:
        """Take in invalidations. One that arrived at reply `position` of a pipeline changes a key
        read by that pipeline only if it came after the key's first reply (`first_read`)."""
        pos = self._pos
        for push in pushes:
            if push.keys is None:
                self.dirty.update(self.keys)
                continue
            for key in push.keys:
                if key in pos and (first_read is None or push.position > first_read.get(key, -1)):
                    self.dirty.add(key)

    def store(self, key: bytes, length: int, tag: bytes, published: bytes, now: float) -> None:
        """One list as just read: `tag` and `published` from its tail (b"" when empty)."""
        i = self._pos.get(key)
        if i is None:
            return
        self.dirty.discard(key)
        self._unknown.discard(key)
        since, bad = NO_TAIL, False
        if length > 0:
            stamp = _stamp(published)
            bad = bool(published) and stamp is None  # a stamp that is not a finite number
            if stamp is not None:
                since = stamp
            elif tag:
                same = self.tag.get(key) == tag and self.since[i] != NO_TAIL
                since = self.since[i] if same else now
            bad = bad or since == NO_TAIL
            self.tag[key] = tag
        else:
            self.tag.pop(key, None)
        if bad:
            self.malformed.add(key)
        else:
            self.malformed.discard(key)
        self.lengths[i] = length
        self.since[i] = since


def _stamp(text: bytes) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
