"""Workers per queue from the background inspect; the exposition passes promtool."""

from __future__ import annotations

import subprocess
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from celery_queue_exporter.exposition import labelled, render
from tests.exporter.test_unacked_and_ages import sample, wait_value
from tests.support.procs import tool, wait_until


def test_consumers_per_queue(redis_server, start_exporter, start_worker):
    start_worker(redis_server.url, ["shared", "solo"])
    start_worker(redis_server.url, ["shared"])
    before = time.time()
    exporter = start_exporter(
        "--broker-url", redis_server.url, "--consumers-interval", "0.5", "--consumers-timeout", "1"
    )
    samples = exporter.wait_for("celery_queue_consumers", 2, queue_name="shared")
    assert sample(samples, "celery_queue_consumers", queue_name="solo") == 1
    assert sample(samples, "celery_queue_consumers_timestamp_seconds") >= before
    # a queue nobody consumes still shows, with 0 consumers
    redis_server.client().lpush("orphan", "{}")
    exporter2 = start_exporter("--broker-url", redis_server.url, "--queues", "orphan", "--consumers-interval", "0.5")
    wait_value(exporter2, "celery_queue_consumers", lambda v: v == 0, queue_name="orphan")


def test_a_killed_worker_turns_worker_up_to_0_and_its_series_ends_after_the_grace_period(
    redis_server, start_exporter, start_worker
):
    survivor = start_worker(redis_server.url, ["shared"])
    victim = start_worker(redis_server.url, ["shared"])
    exporter = start_exporter(
        "--broker-url", redis_server.url, "--consumers-interval", "0.5", "--worker-grace-period", "4"
    )
    samples = exporter.wait_for("celery_queue_consumers", 2, queue_name="shared")
    up = {labels: v for (name, labels), v in samples.items() if name == "celery_worker_up"}
    assert sorted(up.values()) == [1, 1], up
    # SIGKILL: no worker-offline event, no goodbye; it just stops answering inspect.
    victim.kill()
    victim.popen.wait(timeout=10)
    samples = exporter.wait_for("celery_queue_consumers", 1, queue_name="shared")
    up = {dict(labels)["worker"]: v for (name, labels), v in samples.items() if name == "celery_worker_up"}
    assert sorted(up.values()) == [0, 1], up
    assert survivor.name in next(w for w, v in up.items() if v == 1)
    assert victim.name in next(w for w, v in up.items() if v == 0)
    # past the grace period the dead worker's series is gone, the living one stays
    wait_until(
        lambda: "celery_worker_up" in exporter.text() and victim.name not in exporter.text(),
        15,
        "the dead worker's series to disappear",
    )


def test_consumers_metric_absent_when_disabled(redis_server, start_exporter):
    exporter = start_exporter("--broker-url", redis_server.url, "--queues", "a", "--consumers-interval", "0")
    assert "celery_queue_consumers" not in exporter.text()


def test_promtool_accepts_the_exposition(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue='we"ird\\queue\nname')
    app.send_task("tests.noop", queue="normal", priority=7)
    exporter = start_exporter("--broker-url", redis_server.url, "--consumers-interval", "30")
    text = exporter.text()
    assert 'queue_name="we\\"ird\\\\queue\\nname"' in text
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_fast_renderer_matches_prometheus_client():
    names = ["a", 'b"c', "d\\e\nf", "ü"]
    family = labelled("x_length", "help \\ text\nmore", ("queue_name",), [(n,) for n in names], [1, 2.5, 0.0, 1e20])
    counter = labelled("x_errors", "h", ("reason",), [("r",)], [3], typ="counter")

    class Reg:
        def collect(self):
            return [family, counter]

    ours, theirs = render(Reg().collect()).decode(), generate_latest(Reg()).decode()

    def families(text):
        return [(f.name, f.documentation, f.type, f.samples) for f in text_string_to_metric_families(text)]

    assert families(ours) == families(theirs)
    assert ours.replace("} 1\n", "} 1.0\n").replace("} 3\n", "} 3.0\n") == theirs
