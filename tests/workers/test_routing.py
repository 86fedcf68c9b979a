"""Where each task lands in Redis, with no worker consuming: the lists themselves are the proof."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from tests.support.procs import RedisServer
from tests.workers.helpers import make_app, queued_messages
from workers.routing import LOG_QUEUE_BY_LEVEL

SEP = "\x06\x16"  # kombu's separator of priority lists: "<queue>\x06\x16<step>"


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celery]:
    app = make_app(redis_server)
    yield app
    app.close()


def test_log_message_goes_through_the_logs_exchange_to_the_queue_of_its_level(
    app: Celery, redis_server: RedisServer
) -> None:
    # Nobody declared anything yet: publishing declares the queue and its bindings first,
    # otherwise kombu would drop the message (no binding for the `logs` exchange).
    for level in LOG_QUEUE_BY_LEVEL:
        app.tasks["workers.tasks.log_message"].delay(level, f"at {level}")
    app.tasks["workers.tasks.log_message"].apply_async(kwargs={"level": "ERROR", "text": "upper case"})

    landed = {q: queued_messages(redis_server, q) for q in ("error_logs", "warning_logs", "transient_logs")}
    levels = {q: [m["properties"]["delivery_info"]["routing_key"] for m in msgs] for q, msgs in landed.items()}
    assert levels == {
        "error_logs": ["error", "error"],
        "warning_logs": ["warning"],
        "transient_logs": ["info", "debug"],
    }
    assert {m["properties"]["delivery_info"]["exchange"] for msgs in landed.values() for m in msgs} == {"logs"}
    bindings = {m.decode().replace(SEP, " ") for m in redis_server.client().smembers("_kombu.binding.logs")}
    assert bindings == {"error  error_logs", "warning  warning_logs", "info  transient_logs", "debug  transient_logs"}


def test_an_unknown_log_level_is_refused_when_publishing(app: Celery, redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="log level must be one of"):
        app.tasks["workers.tasks.log_message"].delay("fatal", "nowhere to go")
    assert not redis_server.client().keys("*_logs*")


def test_periodic_task_and_the_rest_are_routed_to_their_queues(app: Celery, redis_server: RedisServer) -> None:
    app.tasks["workers.tasks.periodic_task"].delay()
    app.tasks["workers.tasks.add"].delay(1, 2)
    app.tasks["workers.tasks.ack_task"].delay(0)
    assert [m["headers"]["task"] for m in queued_messages(redis_server, "periodic_tasks")] == [
        "workers.tasks.periodic_task"
    ]
    assert [m["headers"]["task"] for m in queued_messages(redis_server, "default")] == [
        "workers.tasks.add",
        "workers.tasks.ack_task",
    ]


def test_an_explicit_queue_wins_over_the_routing_table(app: Celery, redis_server: RedisServer) -> None:
    app.tasks["workers.tasks.log_message"].apply_async(("error", "parked"), queue="default")
    assert [m["headers"]["task"] for m in queued_messages(redis_server, "default")] == ["workers.tasks.log_message"]
    assert not redis_server.client().exists("error_logs")


def test_priorities_land_in_kombus_priority_lists_with_the_publish_time_stamped(
    app: Celery, redis_server: RedisServer
) -> None:
    add = app.tasks["workers.tasks.add"]
    for priority in (0, 2, 3, 5, 9):
        add.apply_async((priority, 0), priority=priority)
    client = redis_server.client()
    # Default steps [0, 3, 6, 9]: a priority goes to the largest step <= it; step 0 is the bare name.
    assert [client.llen(k) for k in ("default", f"default{SEP}3", f"default{SEP}6", f"default{SEP}9")] == [2, 2, 0, 1]
    for message in queued_messages(redis_server, "default"):
        assert isinstance(message["headers"]["x-published-at"], float)
