"""Lists are read again only when Redis says they changed (client-side caching): a tail that left
while the length stayed the same is still seen at once, and so is every change between scrapes."""

from __future__ import annotations

import json
import time

from tests.support.exporter import sample


def stamped(tag: str, published: float) -> str:
    return json.dumps({"body": "", "headers": {"x-published-at": published}, "properties": {"delivery_tag": tag}})


def test_a_tail_replaced_at_the_same_length_is_seen(redis_server, start_exporter):
    client = redis_server.client()
    client.sadd("_kombu.binding.q", "q\x06\x16\x06\x16q")
    now = time.time()
    client.lpush("q", stamped("oldest", now - 1000), stamped("middle", now - 500))
    exporter = start_exporter("--broker-url", redis_server.url)
    assert 1000 <= exporter.value("celery_queue_oldest_message_age_seconds", queue_name="q") < 1100
    for _ in range(3):  # unchanged: served from what was read, still right
        assert 1000 <= exporter.value("celery_queue_oldest_message_age_seconds", queue_name="q") < 1100

    pipe = client.pipeline(transaction=True)  # a worker takes the oldest, a producer adds one
    pipe.rpop("q").lpush("q", stamped("newest", now - 10)).execute()
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_length", queue_name="q") == 2
    assert 500 <= sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="q") < 600

    client.lpush("q\x06\x169", stamped("urgent", now - 2000))  # a priority list appears
    client.delete("q")
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_length", queue_name="q") == 1
    assert sample(samples, "celery_queue_priority_length", queue_name="q", priority="0") == 0
    assert 2000 <= sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="q") < 2100

    client.flushdb()  # Redis invalidates everything at once
    client.sadd("_kombu.binding.q", "q\x06\x16\x06\x16q")
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_length", queue_name="q") == 0
    assert sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="q") == 0
