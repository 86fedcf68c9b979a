"""The exporter as a real process, seen from outside: its /metrics scraped and parsed."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Sequence
from pathlib import Path

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


def launch_exporter(cwd: Path, args: Sequence[str], env: dict[str, str] | None = None, wait: bool = True) -> Exporter:
    """`celery-queue-exporter ARGS` on a free port; with `wait`, returns once /metrics answers.
    The caller stops `exporter.proc`."""
    port = free_port()
    argv = [str(VENV_BIN / "celery-queue-exporter"), "--port", str(port), *args]
    proc = Proc(f"exporter-{port}", argv, cwd, env=env)
    exporter = Exporter(proc, port)
    if wait:
        try:
            wait_until(lambda: fetch(exporter.url, timeout=5)[0] == 200, 15, "the exporter's /metrics")
        except TimeoutError as exc:
            proc.stop()
            raise AssertionError(f"exporter did not start:\n{proc.log()}") from exc
    return exporter


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_value(exporter: Exporter, name: str, predicate, timeout: float = 20, **labels):
    """Scrape until predicate(value) holds; returns the scrape."""
    last = {}

    def check():
        samples = exporter.scrape()
        last["v"] = sample(samples, name, **labels)
        return samples if last["v"] is not None and predicate(last["v"]) else None

    try:
        return wait_until(check, timeout, f"{name}{labels}")
    except TimeoutError as exc:
        raise AssertionError(f"{name}{labels} stayed {last.get('v')}\n{exporter.proc.log()}") from exc


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_EXPORTER_", "CELERY_BROKER"))}
    full_env.update(env or {})
    return subprocess.run(
        [str(VENV_BIN / "celery-queue-exporter"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )
