"""Load: a burst of 100,000 tasks published as fast as two producers can, then a queue 1,000,000
deep. The exporter keeps answering within Prometheus' scrape timeout with flat memory, counts
every message, and nothing else in the stack falls over."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.support import Report, rss_bytes
from tests.support.procs import REPO, wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow

BURST = 100_000
PRODUCERS = 2  # one per core of the test machine
DEEP = 1_000_000
MiB = 1 << 20
# Prometheus' scrape timeout in this stack (LocalStack: 1 s); production's is 10 s.
SCRAPE_TIMEOUT_S = 1.0
# The exporter keeps only what is still in Redis: its memory must not grow with the backlog.
RSS_GROWTH_LIMIT = 32 * MiB


class Sampler:
    """Scrapes the exporter every `every` seconds in a thread: HTTP time, its own scrape duration."""

    def __init__(self, url: str, every: float = 0.5) -> None:
        self.url, self.every = url + "/metrics", every
        self.samples: list[tuple[float, float, dict[str, float]]] = []  # (at, http seconds, values)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = requests.get(self.url, timeout=10)
                took = time.monotonic() - started
                values = {
                    s.name: s.value
                    for f in text_string_to_metric_families(reply.text)
                    for s in f.samples
                    if not s.labels
                }
                self.samples.append((started, took, values))
            except (requests.RequestException, ValueError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.every)

    def http(self) -> list[float]:
        return [took for _, took, _ in self.samples]

    def scrape(self) -> list[float]:
        return [v["celery_exporter_scrape_duration_seconds"] for _, _, v in self.samples]


def test_a_burst_of_100k_tasks_and_a_queue_1m_deep(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(LocalStack(tmp_path))  # Redis without persistence: 1M tasks are ~1.4 GB of memory
    exporter, flower = stack.procs["exporter"], stack.procs["flower"]
    client = stack.redis.client()
    client.connection_pool.connection_kwargs["socket_timeout"] = 120
    time.sleep(2)
    rss_start, flower_start = rss_bytes(exporter.pid), rss_bytes(flower.pid)

    # -- the burst: publish as fast as PRODUCERS processes can --------------------------------
    share = BURST // PRODUCERS
    argv = [sys.executable, "-m", "workers.load", "--queue", "burst", "--count", str(share)]
    env = {**os.environ, **stack.env}
    with Sampler(stack.url("exporter")) as during_burst:
        started = time.monotonic()
        producers = [
            subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(PRODUCERS)
        ]
        outputs = [p.communicate(timeout=600)[0] for p in producers]
        burst_s = time.monotonic() - started
        assert all(p.returncode == 0 for p in producers), outputs
        wait_until(lambda: stack.exporter_value("celery_queue_length", queue_name="burst") == BURST, 30, "burst")
    report.injected(f"{BURST} tasks published by {PRODUCERS} producers in {burst_s:.1f}s")
    report.figure("burst publish rate", round(BURST / burst_s), "tasks/s")
    report.figure("exporter scrapes during the burst", len(during_burst.samples))
    report.figure("slowest GET /metrics during the burst", max(during_burst.http()), "s")
    assert not during_burst.failures, during_burst.failures[:3]

    # -- the deep queue: copies of a real message, pushed 10,000 at a time --------------------
    message = client.lindex("burst", -1)
    started = time.monotonic()
    chunk = [message] * 10_000
    for _ in range(DEEP // len(chunk)):
        client.lpush("deep", *chunk)
    client.sadd("_kombu.binding.deep", "deep\x06\x16\x06\x16deep")
    fill_s = time.monotonic() - started
    report.injected(f"queue deep filled to {DEEP} copies of a {len(message)}-byte task message in {fill_s:.0f}s")
    wait_until(lambda: stack.exporter_value("celery_queue_length", queue_name="deep") == DEEP, 60, "deep")

    with Sampler(stack.url("exporter"), every=0.25) as deep:
        time.sleep(10)
    http, scrape = deep.http(), deep.scrape()
    rss_end, flower_end = rss_bytes(exporter.pid), rss_bytes(flower.pid)
    used = int(client.info("memory")["used_memory"])
    report.figure("GET /metrics with 1.1M tasks waiting, median", statistics.median(http), "s")
    report.figure("GET /metrics with 1.1M tasks waiting, max", max(http), "s")
    report.figure("celery_exporter_scrape_duration_seconds, max", max(scrape), "s")
    report.figure("exporter RSS at start", round(rss_start / MiB, 1), "MiB")
    report.figure("exporter RSS with 1.1M tasks waiting", round(rss_end / MiB, 1), "MiB")
    report.figure("Flower RSS at start / after the burst", f"{flower_start / MiB:.0f} / {flower_end / MiB:.0f}", "MiB")
    report.figure("Redis used_memory with 1.1M tasks", round(used / MiB), "MiB")
    assert not deep.failures, deep.failures[:3]
    assert max(http) < SCRAPE_TIMEOUT_S, "every scrape within Prometheus' scrape timeout"
    assert rss_end - rss_start < RSS_GROWTH_LIMIT, "the exporter's memory does not grow with the backlog"

    # -- the rest of the stack ----------------------------------------------------------------
    assert stack.exporter_value("celery_queue_length", queue_name="burst") == BURST
    assert float(stack.query('celery_queue_length{queue_name="deep"}')[0]["value"][1]) == DEEP
    wait_until(
        lambda: stack.targets_up() == {"prometheus", "alertmanager", "celery-queue-exporter", "flower"},
        30,
        "every target up",
    )
    lowest_up = stack.query(f"min_over_time(up[{int(time.monotonic() - started) + 30}s])")
    assert all(float(s["value"][1]) == 1 for s in lowest_up), lowest_up
    assert all(proc.alive() for proc in stack.procs.values())
    report.lost("tasks of the burst", BURST - int(client.llen("burst")))
    report.observed("every process alive and every Prometheus target up throughout (min_over_time(up) = 1)")
    client.delete("deep", "burst")  # frees 1.4 GB before the next test
