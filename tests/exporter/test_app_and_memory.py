"""--app: queues and transport options from a Celery app; memory stays flat over many scrapes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.exporter.test_unacked_and_ages import sample


def test_app_gives_queues_and_transport_options(redis_server, start_exporter, celery_producer):
    options = {"global_keyprefix": "app:", "priority_steps": [0, 5], "sep": ":"}
    app = celery_producer(redis_server.url, options)
    app.send_task("tests.noop", queue="routed", priority=7)
    assert redis_server.client().llen("app:routed:5") == 1
    env = {"TEST_BROKER_URL": redis_server.url, "TEST_TRANSPORT_OPTIONS": json.dumps(options)}
    exporter = start_exporter("--broker-url", redis_server.url, "--app", "tests.exporter.celery_testapp:app", env=env)
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_priority_length", queue_name="routed", priority="5") == 1
    assert sample(samples, "celery_queue_length", queue_name="routed") == 1
    # the app's default queue is reported before anything was sent to it
    assert sample(samples, "celery_queue_length", queue_name="celery") == 0
    # an explicit option still wins over the app's transport options
    other = start_exporter(
        "--broker-url",
        redis_server.url,
        "--app",
        "tests.exporter.celery_testapp:app",
        "--global-keyprefix",
        "",
        env=env,
    )
    assert other.value("celery_queue_length", queue_name="routed") is None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_flat_across_scrapes_with_churn(redis_server, start_exporter, celery_producer):
    """1,500 scrapes while tails and unacked entries change (the benchmark does 10,000)."""
    client = redis_server.client()
    for i in range(20):
        client.sadd(f"_kombu.binding.m{i}", f"m{i}\x06\x16\x06\x16m{i}")
    exporter = start_exporter("--broker-url", redis_server.url)
    url = exporter.url
    readings = {}
    for i in range(1500):
        q = f"m{i % 20}"
        tag = f"tag-{i}"
        message = {"body": "", "headers": {}, "properties": {"delivery_tag": tag}}
        pipe = client.pipeline(transaction=False)
        pipe.lpush(q, json.dumps(message)).rpop(q)
        pipe.hset("unacked", tag, json.dumps([message, "", q])).zadd("unacked_index", {tag: i})
        if i >= 50:
            old = f"tag-{i - 50}"
            pipe.hdel("unacked", old).zrem("unacked_index", old)
        pipe.execute()
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            resp.read()
        if i in (300, 1499):
            readings[i] = rss_kib(exporter.proc.pid)
    assert readings[1499] - readings[300] < 2048, readings  # KiB
