"""Start and stop real servers for tests: the process helpers of native/processes.py, which the
benchmarks use too (one copy), under the names the tests import."""

from __future__ import annotations

from native.processes import (
    REPO,
    TOOLS_BIN,
    VENV_BIN,
    Proc,
    RedisServer,
    celery_worker,
    free_port,
    rss_kib,
    tool,
    wait_http,
    wait_until,
)

__all__ = [
    "REPO",
    "TOOLS_BIN",
    "VENV_BIN",
    "Proc",
    "RedisServer",
    "celery_worker",
    "free_port",
    "rss_kib",
    "tool",
    "wait_http",
    "wait_until",
]
