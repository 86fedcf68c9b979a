"""Workers per queue from the background inspect; the exposition passes promtool."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time

from prometheus_client import generate_latest
from prometheus_client.process_collector import ProcessCollector

from celery_queue_exporter.config import load_config
from celery_queue_exporter.target import Target
from tests.support.exporter import sample, wait_value
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


def test_consumers_metric_absent_when_disabled(redis_server, start_exporter, start_worker):
    start_worker(redis_server.url, ["a"])
    disabled = start_exporter("--broker-url", redis_server.url, "--queues", "a", "--consumers-interval", "0")
    enabled = start_exporter("--broker-url", redis_server.url, "--queues", "a", "--consumers-interval", "0.5")
    # The enabled exporter, started after the disabled one, has had its inspect reading...
    enabled.wait_for("celery_queue_consumers", 1, queue_name="a")
    time.sleep(1.0)  # ...and two more intervals of it: time enough for the disabled one to have one too.
    text = disabled.text()
    assert "celery_queue_consumers" not in text and "celery_worker_up" not in text, text
    # off by design, said explicitly (an alert on stale consumers can tell this from a stuck reading)
    assert "\ncelery_exporter_consumers_reading_enabled 0\n" in text, text
    assert "celery_exporter_consumers_reading_errors_total" not in text
    enabled_text = enabled.text()
    assert "\ncelery_exporter_consumers_reading_enabled 1\n" in enabled_text
    assert 'celery_exporter_consumers_reading_errors_total{reason="refused"} 0\n' in enabled_text


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


def _families_of(families):
    class Registry:
        def collect(self):
            return families

    return Registry()


_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


def _sample_line(line: str) -> tuple[str, list[tuple[str, str]], float]:
    """(name, label pairs as escaped in the text, sorted by label name, value)."""
    head, value = line.rsplit(" ", 1)
    name, _, labels = head.partition("{")
    pairs = _LABEL.findall(labels)
    assert labels == "" or labels == ",".join(f'{k}="{v}"' for k, v in pairs) + "}", line  # nothing else in it
    return name, sorted(pairs), float(value)


def _assert_same_exposition(ours: str, theirs: str) -> None:
    """Byte for byte, but for two spellings of the same sample: prometheus_client writes every value
    as a float in Go's style (`1.0`, `1.7e+09`), this renderer integers as integers and floats in
    their shortest repr (`1`, `1700000000.5`); and prometheus_client sorts label names, this
    renderer keeps them in their declared order (`queue_name` before `priority`, as always). Each
    label's escaped text and each value must be the same."""
    ours_lines, their_lines = ours.splitlines(), theirs.splitlines()
    assert len(ours_lines) == len(their_lines), (ours, theirs)
    for mine, other in zip(ours_lines, their_lines, strict=True):
        if mine.startswith("#"):
            assert mine == other
        else:
            (name, labels, value), (their_name, their_labels, their_value) = _sample_line(mine), _sample_line(other)
            assert (name, labels) == (their_name, their_labels), (mine, other)
            assert value == their_value or (math.isnan(value) and math.isnan(their_value)), (mine, other)


def test_fast_renderer_matches_prometheus_client(redis_server, celery_producer):
    """Through the production path (Target.exposition warms the caches), over scrapes that reuse
    the cached line heads and one that must rebuild them."""
    app = celery_producer(redis_server.url, stamp=True)
    for name in ["a", 'b"c', "d\\e\nf", "ü"]:
        app.send_task("tests.noop", queue=name)
    app.send_task("tests.noop", queue="a", priority=7)
    client = redis_server.client()
    client.set("plain-string", "x")  # a wrong-type "queue": counted as an error
    client.sadd("_kombu.binding.plain-string", "plain-string\x06\x16\x06\x16plain-string")
    held = {"body": "", "headers": {}, "properties": {"delivery_tag": "held"}}
    client.hset("unacked", "held", json.dumps([held, "", "a"]))
    client.zadd("unacked_index", {"held": time.time() - 12.5})
    config = load_config(["--broker-url", redis_server.url, "--consumers-interval", "0"])
    target = Target.from_config(config, ["configured"])
    try:
        target.exposition(also=[ProcessCollector(registry=None)])  # the first scrape builds the caches
        for change in [None, None, "new-queue"]:
            if change:
                app.send_task("tests.noop", queue=change)
            misses = target.renderer.misses
            families = target.collect()
            ours = target.renderer.render(families).decode()
            if change:
                assert target.renderer.misses > misses, "the label columns changed: line heads rebuilt"
            else:
                assert target.renderer.misses == misses, "nothing changed: every line head came from the cache"
            assert 'queue_name="d\\\\e\\nf"' in ours and "celery_exporter_scrape_errors_total" in ours
            _assert_same_exposition(ours, generate_latest(_families_of(families)).decode())
    finally:
        target.stop()
