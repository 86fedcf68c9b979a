"""One raw RESP3 connection for pipelines: many small commands sent in one write, their replies
read back with hiredis' C parser, Redis' invalidation pushes (client-side caching) kept in order.

redis-py opens the connection (TLS, unix sockets, Sentinel, AUTH, HELLO 3, SELECT, client name);
its pipeline machinery costs ~9 us a command, so the replies are read here instead, off the
same socket. Requests are bytes the caller packs once (`pack`) and keeps.
"""

from __future__ import annotations

import select
import ssl
import time
from collections.abc import Sequence
from typing import Any

import hiredis
import redis

READ_SIZE = 1 << 16  # hiredis moves what is left of its buffer after each reply: feed it small chunks


def pack(*args: Any) -> bytes:
    return hiredis.pack_command(args)


class Invalidation:
    """Keys Redis said changed since this connection last read them. `keys` None: every key."""

    __slots__ = ("keys", "position")

    def __init__(self, keys: list[bytes] | None, position: int) -> None:
        self.keys = keys
        self.position = position  # replies of the current pipeline read before it arrived


class RespConnection:
    def __init__(self, client: redis.Redis, timeout: float) -> None:
        pool = client.connection_pool
        self.resp3 = True
        try:
            self._conn = pool.connection_class(**{**pool.connection_kwargs, "protocol": 3})
            self._conn.connect()
        except redis.exceptions.ResponseError:  # a server or proxy without HELLO 3: no change notices
            self.resp3 = False
            self._conn = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
            self._conn.connect()
        self._sock = self._conn._sock
        self._sock.settimeout(timeout)
        self._reader = hiredis.Reader(replyError=redis.exceptions.ResponseError)
        self.pushes: list[Invalidation] = []
        self.tracking = False

    def close(self) -> None:
        self._conn.disconnect()

    def track(self) -> str | None:
        """Ask Redis to report changes of every key this connection reads; the refusal, if any."""
        if not self.resp3:
            return "no RESP3 (HELLO 3 refused)"
        (reply,) = self.execute(pack("CLIENT", "TRACKING", "ON"), 1)
        self.tracking = not isinstance(reply, Exception)
        return None if self.tracking else str(reply)

    def drain(self) -> None:
        """Take in the pushes already sent to us (never waits for more)."""
        sock = self._sock
        while (isinstance(sock, ssl.SSLSocket) and sock.pending()) or select.select([sock], [], [], 0)[0]:
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._feed(data, [])

    def execute(self, request: bytes, count: int, deadline: float | None = None) -> list[Any]:
        """Send a pipeline of `count` commands; their replies in order (errors as exceptions)."""
        self._sock.sendall(request)
        replies: list[Any] = []
        self._take(replies)
        while len(replies) < count:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"pipeline of {count} commands not answered within the time budget")
            data = self._sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._feed(data, replies)
        if len(replies) > count:
            raise redis.exceptions.ResponseError("more replies than commands: the connection is out of step")
        return replies

    def _feed(self, data: bytes, replies: list[Any]) -> None:
        self._reader.feed(data)
        self._take(replies)

    def _take(self, replies: list[Any]) -> None:
        gets, append = self._reader.gets, replies.append
        push_type = hiredis.PushNotification
        while (reply := gets()) is not False:
            if type(reply) is push_type:
                self._push(reply, len(replies))
            else:
                append(reply)

    def _push(self, message: Sequence[Any], position: int) -> None:
        if len(message) == 2 and message[0] == b"invalidate":
            keys = message[1]
            self.pushes.append(Invalidation(list(keys) if keys is not None else None, position))
