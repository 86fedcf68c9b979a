"""--app: queues and transport options from a Celery app; memory stays flat over many scrapes."""

from __future__ import annotations

import json

from celery_queue_exporter.config import load_config
from celery_queue_exporter.target import Target
from tests.support.exporter import sample


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


def test_memory_flat_across_scrapes_with_churn(redis_server):
    """1,500 scrapes while list tails, unacked entries and queues themselves change between every
    two: every cache the exporter keeps between scrapes stays bounded by what is in Redis now,
    never by how many scrapes ran (a leak of one entry per scrape would reach 1,500)."""
    client = redis_server.client()
    sep = "\x06\x16"
    queues = [f"m{i}" for i in range(20)]

    def message(tag: str) -> str:
        return json.dumps({"body": "", "headers": {}, "properties": {"delivery_tag": tag}})

    for q in queues:
        client.sadd(f"_kombu.binding.{q}", f"{q}{sep}{sep}{q}")
        client.lpush(q, message(f"{q}-first"), message(f"{q}-second"))
    config = load_config(["--broker-url", redis_server.url, "--consumers-interval", "0", "--queue-grace-period", "0"])
    target = Target.from_config(config, [])
    live_unacked = 50
    # What each cache may hold at most, from what Redis holds: 20 queues (+1 short-lived one),
    # 20 non-empty lists, 50 unacked entries (+1000: entries acked since are pruned in bulk).
    bounds = {
        "tails_first_seen": 21,
        "lists_known": 4 * 22,  # every priority list of the queues measured, empty or not
        "unacked_routing": live_unacked + 1000 + 1,
        "binding_sets": 22,
        "queues_seen": 22,
        "label_text": 2 * 22 + 1000 + 22,  # pruned in bulk too
        "line_heads": 8 * 22 + 4 * 22 + 10,  # one per sample line of the last scrape
    }
    peak: dict[str, int] = {}
    try:
        for i in range(1500):
            q = queues[i % 20]
            tag = f"tag-{i}"
            pipe = client.pipeline(transaction=False)
            pipe.lpush(q, message(tag)).rpop(q)  # a new message at the head, the tail leaves: never empty
            pipe.hset("unacked", tag, json.dumps([json.loads(message(tag)), "", q])).zadd("unacked_index", {tag: i})
            if i >= live_unacked:
                old = f"tag-{i - live_unacked}"
                pipe.hdel("unacked", old).zrem("unacked_index", old)
            # a queue that lives for one scrape (grace period 0): new label text every scrape
            pipe.delete(f"_kombu.binding.short-{i - 1}").sadd(f"_kombu.binding.short-{i}", f"s{sep}{sep}short-{i}")
            pipe.execute()
            text = target.exposition().decode()
            if i == 0:
                assert f'celery_queue_oldest_message_age_seconds{{queue_name="{q}"}}' in text
            for name, size in target.cache_sizes().items():
                peak[name] = max(peak.get(name, 0), size)
        assert f'queue_name="short-{i}"' in text and 'celery_queue_unacked{queue_name="m0"} 2' in text, text
    finally:
        target.stop()
    assert set(peak) == set(bounds), "a cache without a bound in this test"
    over = {name: (peak[name], bound) for name, bound in bounds.items() if peak[name] > bound}
    assert not over, over
    assert peak["tails_first_seen"] >= 20 and peak["unacked_routing"] >= live_unacked, peak  # they were used
