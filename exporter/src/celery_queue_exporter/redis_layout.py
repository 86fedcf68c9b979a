"""Key names and value formats kombu's Redis transport uses (checked against kombu 5.7)."""

from __future__ import annotations

import re
from bisect import bisect
from dataclasses import dataclass, field

DEFAULT_PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
DEFAULT_SEP = "\x06\x16"
BINDING_PREFIX = "_kombu.binding."  # the dot matters: it skips _kombu.binding_permanent.* and _deadlines
EVENT_QUEUE_PREFIX = "celeryev."
PIDBOX_SUFFIX = ".pidbox"
REPLY_PIDBOX_SUFFIX = ".reply.celery.pidbox"


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str
    pattern: str
    queue: str


@dataclass(frozen=True)
class RedisLayout:
    """Where one Celery app's kombu transport keeps its queues, given its transport options."""

    global_keyprefix: str = ""
    sep: str = DEFAULT_SEP
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"
    _steps_sorted: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps_sorted", tuple(sorted(set(self.priority_steps))))

    @property
    def steps(self) -> tuple[int, ...]:
        return self._steps_sorted

    def step_for(self, priority: int) -> int:
        """The list a message of `priority` goes to: the largest step <= priority (as kombu does)."""
        steps = self._steps_sorted
        return steps[max(bisect(steps, priority) - 1, 0)]

    def list_name(self, queue: str, step: int) -> str:
        """Key name of one priority list, without the global prefix (step 0 is the bare name)."""
        return f"{queue}{self.sep}{step}" if step else queue

    def list_key(self, queue: str, step: int) -> str:
        return self.global_keyprefix + self.list_name(queue, step)

    def list_keys(self, queue: str) -> list[str]:
        return [self.list_key(queue, step) for step in self._steps_sorted]

    @property
    def binding_key_prefix(self) -> str:
        return self.global_keyprefix + BINDING_PREFIX

    @property
    def unacked_hash_key(self) -> str:
        return self.global_keyprefix + self.unacked_key

    @property
    def unacked_zset_key(self) -> str:
        return self.global_keyprefix + self.unacked_index_key

    def parse_binding(self, exchange: str, member: str) -> Binding | None:
        """A member of `_kombu.binding.<exchange>` is `routing_key sep pattern sep queue`."""
        parts = member.split(self.sep)
        if len(parts) != 3:
            return None
        return Binding(exchange, parts[0], parts[1], parts[2])


def is_internal_queue(name: str) -> bool:
    """Event and remote-control queues are Celery's plumbing, not work waiting."""
    return (
        not name
        or name.startswith(EVENT_QUEUE_PREFIX)
        or name.endswith(PIDBOX_SUFFIX)
        or name.endswith(REPLY_PIDBOX_SUFFIX)
    )


_DELIVERY_TAG = b'"delivery_tag": "'
_PUBLISHED_AT = b'"x-published-at": '
_NUMBER = re.compile(rb"[-+0-9.eE]+")


def tail_fields(message: bytes) -> tuple[bytes, bytes]:
    """(delivery tag, x-published-at as text) of a kombu message, b"" for what it lacks.

    Properties come last in kombu's JSON and headers just before, so both are looked for near
    the end first: a 27 MB body is not scanned."""
    size = len(message)
    start = max(size - 4096, 0)
    at = message.find(_DELIVERY_TAG, start)
    if at < 0 and start:
        at = message.find(_DELIVERY_TAG)
    tag = b""
    if at >= 0:
        at += len(_DELIVERY_TAG)
        close = message.find(b'"', at, at + 201)
        if close >= 0:
            tag = message[at:close]
    published = b""
    at = message.find(_PUBLISHED_AT, max(size - 65536, 0))
    if at >= 0:
        number = _NUMBER.match(message, at + len(_PUBLISHED_AT))
        published = number.group() if number else b""
    return tag, published


def unacked_routing_part(entry: bytes) -> bytes:
    """The `["exchange", "routing_key"]` end of an unacked entry `[message, exchange, routing_key]`.

    The message is a JSON object whose last `}, "` ends it (a quote inside a JSON string is always
    escaped). An entry without that shape comes back whole if small, else b"?"."""
    last = entry.rfind(b'}, "', max(len(entry) - 1024, 0))
    if last >= 0:
        return b"[" + entry[last + 3 :]
    return entry if len(entry) <= 65536 else b"?"
