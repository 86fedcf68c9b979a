"""Garbage in Redis, a frozen Redis, and the grace period and cap on queues: never a crash or a 500."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.support.exporter import fetch, parse, sample

SEP = "\x06\x16"


def bind(client, exchange: str, queue: str, routing_key: str | None = None) -> None:
    client.sadd(f"_kombu.binding.{exchange}", f"{routing_key or queue}{SEP}{SEP}{queue}")


def test_garbage_is_counted_and_other_queues_still_report(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue="good")
    app.send_task("tests.noop", queue="huge", args=["x" * 20_000_000])  # a 27 MB message at the tail
    client = redis_server.client()
    bind(client, "strkey", "strkey")
    client.set("strkey", "not a list")  # a queue name that is a string key
    bind(client, "junk", "junk")
    client.lpush("junk", b"\xff\xfe not json at all", b"{}")  # messages nothing can parse
    client.set("_kombu.binding.notaset", "x")  # a binding key of the wrong type
    client.sadd("_kombu.binding.weird", "no separators here")
    # unacked entries: one with garbage, one with an unknown encoding of the message
    client.hset("unacked", "tag-garbage", "garbage")
    client.zadd("unacked_index", {"tag-garbage": time.time() - 5})
    client.hset("unacked", "tag-bin", json.dumps(["\u0000\u00ff binary", "", "good"]))
    client.zadd("unacked_index", {"tag-bin": time.time() - 7})

    exporter = start_exporter("--broker-url", redis_server.url)
    samples = exporter.scrape()
    assert sample(samples, "celery_broker_up") == 1
    assert sample(samples, "celery_queue_length", queue_name="good") == 1
    assert sample(samples, "celery_queue_length", queue_name="huge") == 1
    assert sample(samples, "celery_queue_length", queue_name="junk") == 2
    assert sample(samples, "celery_queue_length", queue_name="strkey") == 0
    assert sample(samples, "celery_queue_unacked", queue_name="good") == 1
    assert 6 <= sample(samples, "celery_queue_unacked_oldest_age_seconds", queue_name="good") < 60
    assert sample(samples, "celery_exporter_unacked_unattributed") == 1
    errors = {k[1][0][1]: v for k, v in samples.items() if k[0] == "celery_exporter_scrape_errors_total"}
    assert errors["wrong_type"] >= 1
    assert errors["malformed_message"] >= 1
    assert errors["malformed_unacked"] == 1
    assert errors["redis"] == 0

    # the unacked index itself of the wrong type: counted, queues still reported
    client.delete("unacked_index")
    client.set("unacked_index", "oops")
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_length", queue_name="good") == 1
    assert sample(samples, "celery_broker_up") == 1
    assert exporter.proc.alive()


def test_frozen_redis_answers_within_the_timeout_then_recovers(redis_server, start_exporter):
    exporter = start_exporter("--broker-url", redis_server.url, "--queues", "q", "--redis-timeout", "1")
    assert exporter.value("celery_broker_up") == 1
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, body = fetch(exporter.url, timeout=10)
        elapsed = time.monotonic() - started
        assert status == 200
        assert sample(parse(body), "celery_broker_up") == 0
        assert elapsed < 5, elapsed  # bounded by --redis-timeout, not by the frozen server
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    exporter.wait_for("celery_broker_up", 1)


def test_vanished_queue_reports_through_the_grace_period_then_goes(redis_server, start_exporter):
    client = redis_server.client()
    bind(client, "temp", "temp")
    exporter = start_exporter("--broker-url", redis_server.url, "--queue-grace-period", "2")
    assert exporter.value("celery_queue_length", queue_name="temp") == 0
    client.delete("_kombu.binding.temp")
    assert exporter.value("celery_queue_length", queue_name="temp") == 0  # still within the grace period
    time.sleep(2.5)
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_length", queue_name="temp") is None
    assert sample(samples, "celery_queue_unacked", queue_name="temp") is None


def test_max_queues_caps_and_counts_the_excess(redis_server, start_exporter):
    client = redis_server.client()
    for i in range(12):
        bind(client, f"q{i:02d}", f"q{i:02d}")
    exporter = start_exporter("--broker-url", redis_server.url, "--max-queues", "5", "--queues", "zz")
    samples = exporter.scrape()
    reported = sorted(k[1][0][1] for k in samples if k[0] == "celery_queue_length")
    assert reported == ["q00", "q01", "q02", "q03", "zz"]  # configured queues first
    assert sample(samples, "celery_exporter_queues_dropped") == 8
    exporter.scrape()
    assert exporter.proc.log().count("more queues than --max-queues") == 1
