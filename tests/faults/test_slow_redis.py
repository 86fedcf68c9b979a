"""A slow Redis: frozen by DEBUG SLEEP, then blocked by a busy Lua script. Every Prometheus scrape
of the exporter still completes within the scrape timeout (the exporter bounds each Redis
command by --redis-timeout and answers celery_broker_up 0), so the exporter never looks down."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.faults.support import Report, compose_stack, producer
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow

SCRAPE = "3s"  # Prometheus' scrape interval and timeout here (production: 15s and 10s)
REDIS_TIMEOUT = "1"  # the exporter's --redis-timeout here (default 3s, under production's 10s)
BUSY_SCRIPT = """local function now() local t = redis.call('TIME') return t[1] + t[2] / 1e6 end
local t0 = now()
while now() - t0 < tonumber(ARGV[1]) do end
return 1"""


def block(server, what: str, seconds: int) -> threading.Thread:
    """Block Redis for `seconds` from a thread of its own, as the admin user."""
    client = server.client(user="admin")
    client.connection_pool.connection_kwargs["socket_timeout"] = seconds + 10
    command = ("DEBUG", "SLEEP", seconds) if what == "debug-sleep" else ("EVAL", BUSY_SCRIPT, 0, seconds)

    def run() -> None:
        # BUSY or a reply: whatever Redis says when it is done, the block itself is the point
        with contextlib.suppress(redis.RedisError):
            client.execute_command(*command)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def window(stack, promql: str, seconds: float) -> float:
    result = stack.query(promql.replace("WINDOW", f"{round(seconds)}s"))
    assert result, promql
    return float(result[0]["value"][1])


def test_slow_redis_scrapes_stay_within_the_timeout(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(
        compose_stack(
            tmp_path,
            redis_args=["--enable-debug-command", "local"],  # this test's Redis only: DEBUG SLEEP
            interval=SCRAPE,
            args={"exporter": ["--redis-timeout", REDIS_TIMEOUT]},
        )
    )
    job = '{job="celery-queue-exporter"}'
    app = producer(stack)
    # 4 s frozen: at least one scrape falls in it; 7 s of script: past busy-reply-threshold (5 s),
    # so the last scrapes get BUSY errors instead of waiting.
    for what, seconds in (("debug-sleep", 4), ("busy-script", 7)):
        started = time.monotonic()
        thread = block(stack.redis, what, seconds)
        report.injected(
            f"Redis blocked {seconds}s by {'DEBUG SLEEP' if what == 'debug-sleep' else 'a busy Lua script'} "
            f"(busy-reply-threshold 5s); Prometheus scrapes every {SCRAPE} with a {SCRAPE} timeout, "
            f"the exporter has --redis-timeout {REDIS_TIMEOUT}"
        )
        # Only Prometheus scrapes meanwhile: a scrape of ours would queue behind or before its own.
        thread.join()
        blocked = time.monotonic() - started
        assert blocked >= seconds - 0.5, f"Redis was blocked {blocked:.1f}s only"
        time.sleep(4)  # every scrape begun during the block has ended and been stored
        span = time.monotonic() - started + 2

        slowest = window(stack, f"max_over_time(scrape_duration_seconds{job}[WINDOW])", span)
        redis_time = window(stack, f"max_over_time(celery_exporter_scrape_duration_seconds{job}[WINDOW])", span)
        lowest_up = window(stack, f"min_over_time(up{job}[WINDOW])", span)
        broker_down = window(stack, f"min_over_time(celery_broker_up{job}[WINDOW])", span)
        report.figure(f"{what}: slowest Prometheus scrape of the exporter (--redis-timeout 1)", slowest, "s")
        report.figure(
            f"{what}: most Redis time in one scrape (celery_exporter_scrape_duration_seconds)", redis_time, "s"
        )
        report.observed(
            f"{what}: Redis blocked {blocked:.1f}s; over that window min up = {lowest_up:g} "
            f"(1: no scrape failed or timed out), min celery_broker_up = {broker_down:g}"
        )
        assert lowest_up == 1
        assert slowest < 3, "every scrape within Prometheus' scrape timeout"
        assert broker_down == 0, "the block was seen and reported as celery_broker_up 0"

        wait_until(lambda: stack.exporter_value("celery_broker_up") == 1, 10, "the exporter reading Redis again")
        assert app.tasks["workers.tasks.add"].delay(1, 1).get(timeout=30) == 2
        assert all(proc.alive() for proc in stack.procs.values())
        report.observed(f"{what}: afterwards every process alive, the worker runs tasks")
    app.close()
