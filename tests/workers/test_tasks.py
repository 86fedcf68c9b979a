"""Every task of the demo app runs on a real worker and returns what it should."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from tests.support.procs import Proc, RedisServer
from tests.workers.helpers import EventLog, make_app, start_worker
from workers.routing import WORKER_QUEUES
from workers.runs import runs

RESULT_TIMEOUT = 20
RETRY_COUNTDOWN = "0.2"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One worker for the whole module, on every queue of the stack's worker command."""
    proc = start_worker(
        "tasks",
        redis,
        tmp_path_factory.mktemp("logs"),
        WORKER_QUEUES,
        env={"CELERY_RETRY_COUNTDOWN": RETRY_COUNTDOWN},
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def app(redis: RedisServer, worker: Proc) -> Iterator[Celery]:
    app = make_app(redis)
    yield app
    app.close()


def test_add_and_sqrt_task_return_their_results(app: Celery) -> None:
    assert app.tasks["workers.tasks.add"].delay(2, 3).get(timeout=RESULT_TIMEOUT) == 5
    assert app.tasks["workers.tasks.sqrt_task"].delay(16).get(timeout=RESULT_TIMEOUT) == 4.0
    negative = app.tasks["workers.tasks.sqrt_task"].delay(-1)
    with pytest.raises(ValueError, match=">= 0"):
        negative.get(timeout=RESULT_TIMEOUT)
    assert negative.state == "FAILURE"


def test_bind_task_reports_its_own_request(app: Celery) -> None:
    result = app.tasks["workers.tasks.bind_task"].delay()
    info = result.get(timeout=RESULT_TIMEOUT)
    assert info["id"] == result.id
    assert info["retries"] == 0
    assert info["hostname"].startswith("tasks@")
    assert info["delivery_info"]["routing_key"] == "default"


@pytest.mark.parametrize("level", ["error", "warning", "info", "debug"])
def test_log_message_runs_and_arrives_through_the_logs_exchange(app: Celery, worker: Proc, level: str) -> None:
    result = app.tasks["workers.tasks.log_message"].delay(level, f"hello at {level}")
    assert result.get(timeout=RESULT_TIMEOUT) == {
        "level": level,
        "text": f"hello at {level}",
        "exchange": "logs",
        "routing_key": level,
    }
    if level != "debug":  # the worker logs at INFO
        assert f"hello at {level}" in worker.log()


def test_failing_task_keeps_its_id_across_retries_and_ends_failure(app: Celery, redis: RedisServer) -> None:
    task = app.tasks["workers.tasks.failing_task"]
    with EventLog(app) as events:
        result = task.delay()
        with pytest.raises(RuntimeError, match="on purpose"):
            result.get(timeout=RESULT_TIMEOUT)
        assert result.state == "FAILURE"

    # What Flower sees: one task id, received once per attempt, retried max_retries times.
    seen = events.for_task(result.id)
    kinds = [e["type"] for e in seen]
    assert kinds.count("task-received") == task.max_retries + 1 == 4
    assert kinds.count("task-retried") == 3
    assert kinds.count("task-failed") == 1
    assert not [e for e in events.of_type("task-received") if e["name"] == task.name and e["uuid"] != result.id]
    # ... and the task itself ran 4 times under that same id.
    assert runs(redis.client(db=1), task.name) == {result.id: 4}


def test_failing_task_can_recover_on_a_retry(app: Celery) -> None:
    result = app.tasks["workers.tasks.failing_task"].delay(succeed_on_retry=2)
    assert result.get(timeout=RESULT_TIMEOUT) == "succeeded on retry 2"
