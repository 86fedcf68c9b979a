"""Reading a test vhost with the exporter's RabbitMQ reader, and waiting on sampled numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from celery import Celery

from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.rabbitmq_management import ManagementClient, management_target
from celery_queue_exporter.rabbitmq_reading import RabbitMQReader, RabbitReading
from tests.support.procs import wait_until
from tests.support.rabbitmq import RabbitMQNode

ADD = "workers.tasks.add"
T = TypeVar("T")


def make_reader(
    rabbitmq: RabbitMQNode,
    vhost: str,
    queues: tuple[str, ...] = (),
    broker_url: str | None = None,
    management_url: str | None = None,
) -> RabbitMQReader:
    target = management_target(broker_url or rabbitmq.amqp_url(vhost), management_url or rabbitmq.management_url)
    return RabbitMQReader(ManagementClient(target, timeout=5), QueueSet(queues, grace=300, max_queues=5000))


def by_queue(reading: RabbitReading) -> dict[str, tuple[int, int, int, float | None]]:
    """queue -> (ready, unacked, consumers, oldest ready age)."""
    columns = zip(reading.ready, reading.unacked, reading.consumers, reading.ready_age, strict=True)
    return dict(zip(reading.queues, columns, strict=True))


def poll_until(
    read: Callable[[], T], check: Callable[[T], bool], what: str, describe: Callable[[T], str], timeout: float = 20
) -> T:
    """`read()` until `check` holds (management numbers are sampled: every second on the test
    node); the failure says what the last reading was, through `describe`."""
    last: list[T] = []

    def attempt() -> T | None:
        last[:] = [read()]
        return last[0] if check(last[0]) else None

    try:
        return wait_until(attempt, timeout, what, 0.25)  # type: ignore[return-value]
    except TimeoutError as exc:
        raise AssertionError(f"{what}: {describe(last[0]) if last else 'no reading'}") from exc


def read_until(reader: RabbitMQReader, check: Callable[[RabbitReading], bool], what: str) -> RabbitReading:
    return poll_until(reader.read, check, what, lambda r: f"last reading {by_queue(r)}, up={r.up}")


def publish(app: Celery, task: str, count: int, args: tuple = (), **options: object) -> None:
    """`count` tasks over one connection; without a result (the rpc:// backend would declare its
    reply queue before every message, tripling the time)."""
    options.setdefault("ignore_result", True)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(task, args, producer=producer, **options)
