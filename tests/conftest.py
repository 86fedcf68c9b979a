from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server of its own for one test (never the machine's shared one)."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
