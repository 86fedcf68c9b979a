"""`python -m workers.load`: many tasks to a queue nobody consumes, all of them kept in Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.procs import REPO, RedisServer
from tests.workers.helpers import broker_env, queued_messages

SEP = "\x06\x16"


def load(redis: RedisServer | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(broker_env(redis) if redis else {})}
    return subprocess.run(
        [sys.executable, "-m", "workers.load", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_publishes_1500_tasks_to_an_unconsumed_queue_and_they_all_stay(redis_server: RedisServer) -> None:
    done = load(redis_server, "--queue", "backlog", "--count", "1500")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("published 1500 add task(s) to backlog in ")
    assert "1500/1500" in done.stderr  # the progress bar

    client = redis_server.client()
    assert client.llen("backlog") == 1500
    # Declared, so discoverable from Redis alone (the exporter finds queues by their bindings).
    assert client.smembers("_kombu.binding.backlog") == {f"backlog{SEP}{SEP}backlog".encode()}
    oldest = queued_messages(redis_server, "backlog")[0]
    assert oldest["headers"]["task"] == "workers.tasks.add"
    assert "x-published-at" in oldest["headers"]


def test_task_kind_priority_and_countdown_options(redis_server: RedisServer) -> None:
    done = load(
        redis_server, "--queue", "backlog", "--count", "5", "--task", "log", "--level", "warning", "--priority", "7",
        "--countdown", "600",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert redis_server.client().llen(f"backlog{SEP}6") == 5
    message = queued_messages(redis_server, f"backlog{SEP}6")[0]
    assert message["headers"]["task"] == "workers.tasks.log_message"
    assert message["headers"]["argsrepr"] == "('warning', 'load message 0')"
    assert message["headers"]["eta"]


def test_retry_is_a_failing_task_that_succeeds_on_its_first_retry(redis_server: RedisServer) -> None:
    done = load(redis_server, "--queue", "backlog", "--count", "2", "--task", "retry")
    assert done.returncode == 0, done.stderr
    message = queued_messages(redis_server, "backlog")[0]
    assert message["headers"]["task"] == "workers.tasks.failing_task"
    assert message["headers"]["argsrepr"] == "(1,)"  # succeed_on_retry=1


def test_without_queue_the_apps_routing_decides(redis_server: RedisServer) -> None:
    done = load(redis_server, "--task", "log", "--level", "error", "--count", "3")
    assert done.returncode == 0, done.stderr
    assert redis_server.client().llen("error_logs") == 3


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--count", "0"], "--count: '0' must be at least 1"),
        (["--count", "many"], "--count: 'many' is not a whole number"),
        (["--priority", "10"], "--priority: '10' is not a priority from 0 to 9"),
        (["--task", "nope"], "--task: invalid choice: 'nope'"),
        (["--countdown", "5", "--eta", "2030-01-01T00:00:00"], "not allowed with argument"),
        (["--eta", "tomorrow"], "--eta: 'tomorrow' is not an ISO 8601 time"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(args: list[str], complaint: str) -> None:
    done = load(None, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("python -m workers.load: error: ") and complaint in done.stderr


def test_an_unreachable_broker_is_one_line_and_exit_1(redis_server: RedisServer) -> None:
    redis_server.stop()
    done = load(redis_server, "--count", "3")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot publish to redis://127.0.0.1:" in done.stderr, done.stderr
