"""What the RabbitMQ reader sees of real Celery producers on a private node (workers, and the
broker stopped, are in test_exporter.py: the reader and the exporter process in the same scenario)."""

from __future__ import annotations

import time

from celery import Celery
from kombu import Connection, Exchange, Queue

from tests.rabbitmq.helpers import ADD, by_queue, make_reader, publish, read_until
from tests.support.rabbitmq import RabbitMQNode


def test_backlogs_routing_and_configured_queues_in_one_request(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery
) -> None:
    publish(producer, ADD, 1500, (1, 2), queue="backlog")
    # Routed by the demo app through the `logs` direct exchange, by routing key.
    publish(producer, "workers.tasks.log_message", 40, ("error", "disk full"), ignore_result=False)
    publish(producer, "workers.tasks.log_message", 3, ("info", "hello"))
    publish(producer, "workers.tasks.log_message", 2, ("debug", "details"))
    rabbitmq.declare_queue(vhost, "nobody_consumes")
    reader = make_reader(rabbitmq, vhost, queues=("default", "not_declared_yet"))

    reading = read_until(
        reader,
        lambda r: by_queue(r).get("backlog", (0,))[0] == 1500 and by_queue(r).get("transient_logs", (0,))[0] == 5,
        "backlog of 1500 and 5 transient logs",
    )
    assert reading.up and not reading.errors
    assert reading.requests == 1
    queues = by_queue(reading)
    # Configured queues first, at 0 before anything declared them; then the vhost's, sorted.
    assert reading.queues == [
        "default",
        "not_declared_yet",
        "backlog",
        "error_logs",
        "nobody_consumes",
        "transient_logs",
    ]
    assert queues["default"] == (0, 0, 0, 0.0)
    assert queues["not_declared_yet"] == (0, 0, 0, 0.0)
    assert queues["nobody_consumes"] == (0, 0, 0, 0.0)
    assert queues["error_logs"][:3] == (40, 0, 0)
    assert queues["backlog"][:3] == (1500, 0, 0)
    # The producer's rpc:// result queue (named by a UUID) is in the vhost, not in the reading.
    status, listed = rabbitmq.api("GET", f"/api/queues/{vhost}?columns=name")
    assert status == 200
    assert len({q["name"] for q in listed} - set(reading.queues)) == 1


def test_a_priority_queue_reports_all_its_messages_as_one_length(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery
) -> None:
    prio = Queue("urgent", Exchange("urgent", type="direct"), "urgent", queue_arguments={"x-max-priority": 9})
    with producer.producer_or_acquire() as p:
        for i in range(30):
            producer.send_task(ADD, (i, i), queue=prio, priority=i % 10, producer=p)
    assert rabbitmq.queue(vhost, "urgent")["arguments"] == {"x-max-priority": 9}
    reader = make_reader(rabbitmq, vhost)
    reading = read_until(reader, lambda r: by_queue(r).get("urgent", (0,))[0] == 30, "30 in the priority queue")
    assert by_queue(reading)["urgent"][:3] == (30, 0, 0)


def test_the_timestamp_property_gives_the_oldest_message_age(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery
) -> None:
    published = time.time()
    publish(producer, ADD, 3, (1, 1), queue="stamped")  # the demo app stamps publish times
    with Connection(rabbitmq.amqp_url(vhost)) as conn:
        p = conn.Producer()
        old = Queue("old", Exchange("old", type="direct"), "old")
        plain = Queue("plain", Exchange("plain", type="direct"), "plain")
        p.publish({"n": 1}, exchange=old.exchange, routing_key="old", declare=[old], timestamp=int(published) - 120)
        p.publish({"n": 2}, exchange=old.exchange, routing_key="old", timestamp=int(published))
        p.publish({"n": 1}, exchange=plain.exchange, routing_key="plain", declare=[plain])
    reader = make_reader(rabbitmq, vhost)
    reading = read_until(
        reader,
        lambda r: all(by_queue(r).get(q, (0,))[0] for q in ("stamped", "old", "plain")),
        "messages in all three queues",
    )
    queues = by_queue(reading)
    elapsed = time.time() - published
    # Stamps are whole seconds: at most one second more than the time since publishing.
    assert 0 <= queues["stamped"][3] <= elapsed + 1
    assert 120 <= queues["old"][3] <= 121 + elapsed  # the head message, the oldest of the two
    assert queues["plain"][3] is None  # no timestamp: absent, never a guess


def test_many_queues_are_read_in_pages_then_in_one_request(rabbitmq: RabbitMQNode, vhost: str) -> None:
    names = [f"q{i:04d}" for i in range(1200)]
    with Connection(rabbitmq.amqp_url(vhost)) as conn:
        channel = conn.default_channel
        for name in names:
            channel.queue_declare(name, durable=True, nowait=True)
        channel.queue_declare("q1199", durable=True, passive=True)  # one round trip: all declared
    # The first scrape pages (500 a page, the most RabbitMQ serves) and learns how many there are;
    # below the paging threshold the next ones ask everything at once.
    reader = make_reader(rabbitmq, vhost)
    first = reader.read()
    assert (first.requests, first.queues) == (3, names)
    second = reader.read()
    assert (second.requests, second.queues) == (1, names)
    # Above it, scrapes page from the one after the scrape that found that many.
    reader.paged_above = 1000
    assert [reader.read().requests for _ in range(3)] == [1, 3, 3]
    assert not first.errors and not second.errors
