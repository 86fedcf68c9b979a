"""Fixtures for the exporter's tests: the exporter and Celery workers as real subprocesses."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import VENV_BIN, Proc, free_port, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fetch(url: str, timeout: float = 10) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


class Exporter:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def text(self) -> str:
        status, body = fetch(self.url)
        assert status == 200
        return body

    def scrape(self) -> Samples:
        return parse(self.text())

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, tuple(sorted(labels.items()))))

    def wait_for(self, name: str, expected: float, timeout: float = 15, **labels: str) -> Samples:
        """Scrape until the sample has the expected value; returns that scrape."""
        last: list[float | None] = [None]

        def check() -> Samples | None:
            samples = self.scrape()
            last[0] = samples.get((name, tuple(sorted(labels.items()))))
            return samples if last[0] == expected else None

        try:
            return wait_until(check, timeout, f"{name}{labels} == {expected}")  # type: ignore[return-value]
        except TimeoutError as exc:
            raise AssertionError(f"{name}{labels} is {last[0]}, expected {expected}\n{self.proc.log()}") from exc


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    """Start `celery-queue-exporter` with the given flags on a free port; stopped after the test."""
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Exporter:
        port = free_port()
        argv = [str(VENV_BIN / "celery-queue-exporter"), "--port", str(port), *args]
        if not any(a.startswith("--consumers-interval") for a in args):
            argv += ["--consumers-interval", "0"]
        proc = Proc(f"exporter-{port}", argv, tmp_path, env=env)
        procs.append(proc)
        exporter = Exporter(proc, port)
        if wait:
            try:
                wait_until(lambda: fetch(exporter.url, timeout=5)[0] == 200, 15, "the exporter's /metrics")
            except TimeoutError as exc:
                raise AssertionError(f"exporter did not start:\n{proc.log()}") from exc
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
        proc = Proc(name, argv, tmp_path, env=env)
        procs.append(proc)
        try:
            wait_until(lambda: "ready." in proc.log() or not proc.alive(), 30, f"worker {name} ready")
        except TimeoutError as exc:
            raise AssertionError(f"worker did not start:\n{proc.log()}") from exc
        assert proc.alive(), proc.log()
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
