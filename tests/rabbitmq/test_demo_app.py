"""The demo app (workers/) on RabbitMQ: CELERY_BROKER_URL=amqp://... alone is enough."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from tests.support.procs import Proc
from tests.support.rabbitmq import RabbitMQNode
from workers.config import Settings


def test_an_amqp_broker_url_gets_the_rpc_result_backend() -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": "amqp://u:p@rabbit:5672//"})
    assert settings.result_backend == "rpc://"
    assert Settings.from_env({"CELERY_BROKER_URL": "redis://h:6379/0"}).result_backend == "redis://h:6379/0"
    explicit = {"CELERY_BROKER_URL": "amqps://h//", "CELERY_RESULT_BACKEND": "redis://h/1"}
    assert Settings.from_env(explicit).result_backend == "redis://h/1"


def test_workers_run_routed_tasks_and_return_results_on_rabbitmq(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery, start_worker: Callable[..., Proc]
) -> None:
    # The worker gets only CELERY_BROKER_URL: its results go back through rpc:// by default.
    worker = start_worker("default,error_logs,transient_logs", "--concurrency=1")
    assert producer.send_task("workers.tasks.add", (2, 3)).get(timeout=20) == 5
    logged = producer.send_task("workers.tasks.log_message", ("error", "disk full")).get(timeout=20)
    assert logged == {"level": "error", "text": "disk full", "exchange": "logs", "routing_key": "error"}
    assert "workers.tasks.log_message" in worker.log()
