"""One private RabbitMQ node for the whole session (it takes ~10 s to start), a vhost per test.

Producers are the demo app in the test process; workers are `celery -A workers.app worker`
subprocesses, both pointed at the test's own vhost.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

import workers.tasks  # noqa: F401 - registers the shared tasks with every app the tests build
from tests.support.exporter import Exporter, launch_exporter
from tests.support.procs import VENV_BIN, Proc, celery_worker
from tests.support.rabbitmq import RabbitMQNode
from workers.app import create_app
from workers.config import Settings

_vhosts = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _no_inherited_celery_env() -> Iterator[None]:
    """Celery prefers CELERY_BROKER_URL from the environment over the configured one."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("CELERY_"):
                mp.delenv(name)
        yield


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQNode]:
    node = RabbitMQNode(tmp_path_factory.mktemp("rabbitmq")).start()
    print(f"\nprivate RabbitMQ node {node.nodename} ready in {node.started_in:.1f}s")
    try:
        yield node
    finally:
        # Its data is thrown away: killing it saves the ~6 s of a graceful shutdown.
        node.stop(graceful=False)


@pytest.fixture
def vhost(rabbitmq: RabbitMQNode) -> Iterator[str]:
    """A vhost of this test's own: its queues are all the test sees."""
    name = f"test-{next(_vhosts)}"
    rabbitmq.add_vhost(name)
    yield name
    if rabbitmq.ready():
        rabbitmq.delete_vhost(name)


@pytest.fixture
def producer(rabbitmq: RabbitMQNode, vhost: str) -> Iterator[Celery]:
    """The demo app publishing to the test's vhost (it stamps publish times)."""
    app = create_app(Settings(broker_url=rabbitmq.amqp_url(vhost), result_backend="rpc://"))
    app.conf.task_send_sent_event = False  # no Flower listens: half the publishes for nothing
    yield app
    app.close()


@pytest.fixture
def start_worker(rabbitmq: RabbitMQNode, vhost: str, tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """`celery -A workers.app worker` on the test's vhost (solo pool: prefetch 4 by default)."""
    procs: list[Proc] = []

    def start(queues: str, *extra: str) -> Proc:
        name = f"w{len(procs)}-{vhost}"
        argv = [
            str(VENV_BIN / "celery"),
            "-A",
            "workers.app",
            "worker",
            "-n",
            f"{name}@%h",
            "-Q",
            queues,
            "--pool=solo",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
            *extra,
        ]
        env = {"CELERY_BROKER_URL": rabbitmq.amqp_url(vhost), "PYTHONUNBUFFERED": "1"}
        proc = celery_worker(name, argv, tmp_path, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill(signal.SIGKILL)  # a warm shutdown would wait for sleeping tasks
        proc.stop()


@pytest.fixture
def start_exporter(rabbitmq: RabbitMQNode, vhost: str, tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    """`celery-queue-exporter` on the test's vhost (URL in the environment: it holds a password),
    the management API given with --management-url; inspect off unless the test turns it on."""
    procs: list[Proc] = []

    def start(*args: str, broker_url: str | None = None, wait: bool = True) -> Exporter:
        if not any(a.startswith("--consumers-interval") for a in args):
            args = (*args, "--consumers-interval", "0")
        env = {"CELERY_EXPORTER_BROKER_URL": broker_url or rabbitmq.amqp_url(vhost)}
        exporter = launch_exporter(tmp_path, ("--management-url", rabbitmq.management_url, *args), env, wait)
        procs.append(exporter.proc)
        return exporter

    yield start
    for proc in procs:
        proc.stop()
