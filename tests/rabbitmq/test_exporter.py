"""The exporter process on RabbitMQ: what a private node holds, seen through /metrics."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from celery_queue_exporter.broker import open_broker
from celery_queue_exporter.config import load_config
from celery_queue_exporter.consumers import INSPECT_PERMISSIONS_AMQP
from celery_queue_exporter.rabbitmq_broker import RabbitMQBroker
from tests.rabbitmq.helpers import ADD, make_reader, poll_until, publish
from tests.support.exporter import Exporter, Samples
from tests.support.procs import VENV_BIN, Proc, tool, wait_until
from tests.support.rabbitmq import RabbitMQNode

SECRET = "s3cr3t-p@ss"


def per_queue(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["queue_name"]: v for (n, labels), v in samples.items() if n == name}


def families(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def scrape_until(exporter: Exporter, check: Callable[[Samples], bool], what: str, timeout: float = 20) -> Samples:
    def describe(samples: Samples) -> str:
        return f"lengths {per_queue(samples, 'celery_queue_length')}\n{exporter.proc.log()[-2000:]}"

    return poll_until(exporter.scrape, check, what, describe, timeout)


def test_backlogs_routing_priorities_and_ages_through_metrics(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery, start_exporter: Callable[..., Exporter]
) -> None:
    publish(producer, ADD, 1500, (1, 2), queue="backlog")  # the demo app stamps publish times
    publish(producer, "workers.tasks.log_message", 40, ("error", "disk full"))  # routed by key
    prio = Queue("urgent", Exchange("urgent", type="direct"), "urgent", queue_arguments={"x-max-priority": 9})
    with producer.producer_or_acquire() as p:
        for i in range(30):
            producer.send_task(ADD, (i, i), queue=prio, priority=i % 10, producer=p, ignore_result=True)
    with Connection(rabbitmq.amqp_url(vhost)) as conn:  # no timestamp property: its age is not known
        plain = Queue("plain", Exchange("plain", type="direct"), "plain")
        conn.Producer().publish({"n": 1}, exchange=plain.exchange, routing_key="plain", declare=[plain])
    rabbitmq.declare_queue(vhost, "nobody_consumes")
    exporter = start_exporter("--queues", "default,not_declared_yet")

    expected = {"backlog": 1500, "error_logs": 40, "urgent": 30, "plain": 1}
    samples = scrape_until(
        exporter,
        lambda s: all(per_queue(s, "celery_queue_length").get(q) == n for q, n in expected.items()),
        "every backlog in celery_queue_length",
    )
    lengths = per_queue(samples, "celery_queue_length")
    queues = {"default", "not_declared_yet", "nobody_consumes", *expected}
    assert set(lengths) == queues  # the rpc:// result queue and Celery's plumbing are not reported
    assert lengths["default"] == lengths["not_declared_yet"] == lengths["nobody_consumes"] == 0
    assert per_queue(samples, "celery_queue_unacked") == dict.fromkeys(queues, 0)
    assert per_queue(samples, "celery_queue_consumers") == dict.fromkeys(queues, 0)

    # The demo app stamps what it publishes: those queues have an age, empty ones 0; the message
    # published without the AMQP timestamp leaves its queue without a line, never a guess.
    ages = per_queue(samples, "celery_queue_oldest_message_age_seconds")
    assert set(ages) == queues - {"plain"}, ages
    assert all(0 <= ages[q] < 120 for q in expected if q != "plain")
    assert ages["nobody_consumes"] == ages["default"] == 0

    # What RabbitMQ cannot tell is absent, not 0.
    absent = {
        "celery_queue_priority_length",
        "celery_queue_unacked_oldest_age_seconds",
        "celery_broker_visibility_timeout_seconds",
        "celery_exporter_redis_round_trips",
        "celery_exporter_unacked_unattributed",
        "celery_queue_consumers_timestamp_seconds",
    }
    assert not absent & families(samples)
    assert samples[("celery_broker_up", ())] == 1
    assert samples[("celery_exporter_queues", ())] == len(queues)
    errors = {
        dict(labels)["reason"]: v for (n, labels), v in samples.items() if n == "celery_exporter_scrape_errors_total"
    }
    assert errors == dict.fromkeys(errors, 0) and "rabbitmq_unreachable" in errors

    text = exporter.text()
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_unacked_consumers_and_worker_up_from_inspect_over_amqp(
    rabbitmq: RabbitMQNode,
    vhost: str,
    producer: Celery,
    start_worker: Callable[..., Proc],
    start_exporter: Callable[..., Exporter],
) -> None:
    publish(producer, "workers.tasks.ack_task", 10, (60,))  # acks_late: unacked while it runs
    # A monitoring user with just the permissions inspect needs, as the README documents them.
    user = f"inspector-{vhost}"
    rabbitmq.add_user(user, SECRET, tags="monitoring")
    rabbitmq.set_permissions(vhost, user, **INSPECT_PERMISSIONS_AMQP)
    exporter = start_exporter(
        "--consumers-interval", "1", "--consumers-timeout", "1", broker_url=rabbitmq.amqp_url(vhost, user, SECRET)
    )
    # A thread pool: a solo worker running a task cannot answer inspect.
    worker = start_worker("default", "--pool=threads", "--concurrency=1", "--prefetch-multiplier=4")

    samples = scrape_until(
        exporter,
        lambda s: (
            (per_queue(s, "celery_queue_length").get("default"), per_queue(s, "celery_queue_unacked").get("default"))
            == (6, 4)
            and per_queue(s, "celery_queue_consumers").get("default") == 1
            and 1 in worker_up(s).values()
        ),
        "4 unacked by 1 consumer, and the worker up",
    )
    (name,) = worker_up(samples)
    assert name.startswith(f"w0-{vhost}@")
    # The worker's remote-control queue exists in the vhost but is Celery's plumbing.
    _, listed = rabbitmq.api("GET", f"/api/queues/{vhost}?columns=name")
    assert any(q["name"].endswith(".celery.pidbox") for q in listed), listed
    assert set(per_queue(samples, "celery_queue_length")) == {"default"}
    # Consumers are the broker's own count; the inspect reading's time still tells how fresh
    # celery_worker_up is (CeleryExporterConsumersStale watches it on both brokers).
    assert time.time() - samples[("celery_queue_consumers_timestamp_seconds", ())] < 10

    worker.kill()  # SIGKILL: RabbitMQ requeues the four; the worker stops answering inspect
    scrape_until(
        exporter,
        lambda s: (
            per_queue(s, "celery_queue_length").get("default") == 10
            and per_queue(s, "celery_queue_unacked").get("default") == 0
            and per_queue(s, "celery_queue_consumers").get("default") == 0
            and worker_up(s) == {name: 0}
        ),
        "requeued, no consumer, the worker down",
    )
    assert exporter.proc.alive()


def worker_up(samples: Samples) -> dict[str, float]:
    return {dict(labels)["worker"]: v for (n, labels), v in samples.items() if n == "celery_worker_up"}


def test_least_privilege_and_wrong_credentials_through_metrics(
    rabbitmq: RabbitMQNode, vhost: str, start_exporter: Callable[..., Exporter]
) -> None:
    rabbitmq.declare_queue(vhost, "jobs")
    with Connection(rabbitmq.amqp_url(vhost)) as conn:
        conn.Producer().publish({"n": 1}, exchange="", routing_key="jobs")
    user = f"monitor-{vhost}"
    rabbitmq.add_user(user, SECRET, tags="monitoring")
    rabbitmq.set_permissions(vhost, user, "^$", "^$", "^$")

    # Inspect on: the broadcast is refused to this user, which the log says once; the counts stay.
    monitor = start_exporter("--consumers-interval", "1", broker_url=rabbitmq.amqp_url(vhost, user, SECRET))
    wrong = start_exporter(broker_url=rabbitmq.amqp_url(vhost, user, "not-" + SECRET))
    scrape_until(monitor, lambda s: per_queue(s, "celery_queue_length").get("jobs") == 1, "the monitor user sees 1")
    wait_until(lambda: "inspect active_queues failed" in monitor.proc.log(), 15, "the refused inspect logged")
    time.sleep(2)  # two more inspect rounds: still one line
    log = monitor.proc.log()
    assert log.count("inspect active_queues failed") == 1, log
    assert "ACCESS_REFUSED" in log and "Celery's inspect needs these permissions" in log
    assert SECRET not in log and "Traceback" not in log
    assert "celery_worker_up" not in families(monitor.scrape())

    wrong.scrape()
    samples = wrong.scrape()
    assert samples[("celery_broker_up", ())] == 0
    assert samples[("celery_exporter_scrape_errors_total", (("reason", "rabbitmq_auth"),))] >= 2
    assert "celery_queue_length" not in families(samples)
    log = wrong.proc.log()
    assert log.count("refused user") == 1, log  # one line for the problem, not one per scrape
    assert SECRET not in log and "Traceback" not in log
    assert wrong.proc.alive()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CELERY_EXPORTER_BROKER_URL": f"amqp://u:{SECRET}@h:99999//"}, "bad port"),
        (
            {"CELERY_EXPORTER_BROKER_URL": f"amqp://u:{SECRET}@h//", "CELERY_EXPORTER_MANAGEMENT_URL": "ftp://h"},
            "--management-url must be http(s)",
        ),
        ({"CELERY_EXPORTER_BROKER_URL": "amqp://h//", "CELERY_EXPORTER_MANAGEMENT_TIMEOUT": "0"}, "must be > 0"),
    ],
)
def test_bad_rabbitmq_options_are_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], says: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "celery-queue-exporter")], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert result.returncode == 2
    assert says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert SECRET not in result.stderr


def test_the_broker_stopped_and_started_again(
    rabbitmq: RabbitMQNode, vhost: str, producer: Celery, start_exporter: Callable[..., Exporter]
) -> None:
    """The reader and the exporter process through the same outage."""
    publish(producer, ADD, 5, (1, 1))
    reader = make_reader(rabbitmq, vhost)
    exporter = start_exporter()
    scrape_until(exporter, lambda s: per_queue(s, "celery_queue_length").get("default") == 5, "5 ready")
    rabbitmq.ctl("stop_app")
    try:
        reading = reader.read()
        assert not reading.up and reading.queues == []
        assert reading.errors == {"rabbitmq_unreachable": 1}
        assert not reader.read().up
        samples = exporter.scrape()
        assert samples[("celery_broker_up", ())] == 0
        assert samples[("celery_exporter_scrape_errors_total", (("reason", "rabbitmq_unreachable"),))] == 1
        assert "celery_queue_length" not in families(samples)
    finally:
        rabbitmq.ctl("start_app")
    scrape_until(
        exporter,
        lambda s: s[("celery_broker_up", ())] == 1 and per_queue(s, "celery_queue_length").get("default") == 5,
        "up again with the durable 5",
        timeout=30,
    )
    assert reader.read().up
    assert exporter.proc.alive() and "Traceback" not in exporter.proc.log()


@pytest.mark.parametrize(
    ("url", "vhost"),
    [("amqp://u:p@h:5672//", "/"), ("pyamqp://u:p@h/orders", "orders"), ("amqps://u:p@h/%2F", "/")],
)
def test_amqp_schemes_open_the_rabbitmq_kind(url: str, vhost: str) -> None:
    broker = open_broker(load_config(["--broker-url", url], environ={}), ["default"])
    assert isinstance(broker, RabbitMQBroker)
    assert (broker.kind, broker.visibility_timeout, broker.reader.client.target.vhost) == ("rabbitmq", None, vhost)
    broker.close()


def test_management_options_from_flag_environment_and_config_file(tmp_path: Path) -> None:
    url = ["--broker-url", "amqp://h//"]
    assert load_config(url, environ={}).management_url is None
    assert load_config(url, environ={}).management_timeout == 5.0
    flag = load_config([*url, "--management-url", "https://m:15671", "--management-timeout", "2"], environ={})
    assert (flag.management_url, flag.management_timeout) == ("https://m:15671", 2.0)
    env = {"CELERY_EXPORTER_MANAGEMENT_URL": "http://e:15672", "CELERY_EXPORTER_MANAGEMENT_TIMEOUT": "3"}
    assert (load_config(url, environ=env).management_url, load_config(url, environ=env).management_timeout) == (
        "http://e:15672",
        3.0,
    )
    config_file = tmp_path / "exporter.yml"
    config_file.write_text("management_url: http://y:15672/rabbitmq\nmanagement_timeout: 4\n")
    from_file = load_config([*url, "--config", str(config_file)], environ={})
    assert (from_file.management_url, from_file.management_timeout) == ("http://y:15672/rabbitmq", 4.0)
    assert from_file.sources["management_url"] == "config file key management_url"
