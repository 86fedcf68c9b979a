"""Fixtures for the exporter's tests: the exporter and Celery workers as real subprocesses."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.exporter import Exporter, launch_exporter
from tests.support.procs import Proc, celery_worker, free_port


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    """Start `celery-queue-exporter` with the given flags on a free port; stopped after the test."""
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Exporter:
        if not any(a.startswith("--consumers-interval") for a in args):
            args = (*args, "--consumers-interval", "0")
        exporter = launch_exporter(tmp_path, args, env=env, wait=wait)
        procs.append(exporter.proc)
        return exporter

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start a real Celery worker (solo pool) of tests.exporter.celery_testapp consuming `queues`."""
    procs: list[Proc] = []

    def start(
        broker_url: str,
        queues: Sequence[str],
        transport_options: dict | None = None,
        extra: Sequence[str] = (),
        direct: str = "",
    ) -> Proc:
        name = f"worker-{len(procs)}-{free_port()}"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.exporter.celery_testapp",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            ",".join(queues),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
        env = {
            "TEST_BROKER_URL": broker_url,
            "TEST_TRANSPORT_OPTIONS": json.dumps(transport_options or {}),
            "TEST_DIRECT_QUEUES": direct,
        }
        proc = celery_worker(name, argv, tmp_path, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def celery_producer() -> Iterator[Callable[..., object]]:
    """In-process Celery apps used as real producers; their connections are closed afterwards."""
    from tests.exporter.celery_testapp import make_app

    apps = []

    def make(broker_url: str, transport_options: dict | None = None, stamp: bool = False, direct: str = ""):
        app = make_app(broker_url, transport_options, stamp, direct)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
    # stamp_publish_time() connects a process-wide signal: undo it for the next test.
    from celery.signals import before_task_publish

    before_task_publish.disconnect(dispatch_uid="celery_queue_exporter.stamp_publish_time")
