"""Unacked messages per queue and ages, with real Celery producers and workers."""

from __future__ import annotations

import time

from tests.support.exporter import sample, wait_value


def test_eta_tasks_held_by_a_worker_are_unacked_of_their_queue(
    redis_server, start_exporter, start_worker, celery_producer
):
    start_worker(redis_server.url, ["eta", "other"])
    app = celery_producer(redis_server.url)
    for _ in range(3):
        app.send_task("tests.noop", queue="eta", countdown=600)
    app.send_task("tests.noop", queue="other", countdown=600)
    exporter = start_exporter("--broker-url", redis_server.url)

    samples = exporter.wait_for("celery_queue_unacked", 3, queue_name="eta")
    assert sample(samples, "celery_queue_unacked", queue_name="other") == 1
    assert sample(samples, "celery_queue_length", queue_name="eta") == 0
    assert sample(samples, "celery_exporter_unacked_unattributed") == 0
    wait_value(exporter, "celery_queue_unacked_oldest_age_seconds", lambda v: v >= 1, queue_name="eta")


def test_running_acks_late_task_is_unacked_and_ready_ones_are_not(
    redis_server, start_exporter, start_worker, celery_producer
):
    worker = start_worker(redis_server.url, ["busy"])
    app = celery_producer(redis_server.url)
    app.send_task("tests.sleep", args=[60], queue="busy")
    exporter = start_exporter("--broker-url", redis_server.url)
    exporter.wait_for("celery_queue_unacked", 1, queue_name="busy")
    for _ in range(4):
        app.send_task("tests.noop", queue="busy")
    samples = exporter.wait_for("celery_queue_length", 4, queue_name="busy")
    # prefetch 1 with acks_late and the solo pool busy: the rest waits in the list
    assert sample(samples, "celery_queue_unacked", queue_name="busy") == 1
    worker.kill()  # a warm shutdown would wait for the 60 s task


def test_routing_through_a_direct_exchange(redis_server, start_exporter, start_worker, celery_producer):
    direct = "high:work:urgent,low:work:later"
    start_worker(redis_server.url, ["high", "low"], direct=direct)
    app = celery_producer(redis_server.url, direct=direct)
    for _ in range(2):
        app.send_task("tests.noop", exchange="work", routing_key="urgent", countdown=600)
    app.send_task("tests.noop", exchange="work", routing_key="later", countdown=600)
    exporter = start_exporter("--broker-url", redis_server.url)
    samples = exporter.wait_for("celery_queue_unacked", 2, queue_name="high")
    assert sample(samples, "celery_queue_unacked", queue_name="low") == 1
    assert sample(samples, "celery_queue_unacked", queue_name="work") is None


def test_global_keyprefix(redis_server, start_exporter, start_worker, celery_producer):
    options = {"global_keyprefix": "pfx:"}
    start_worker(redis_server.url, ["pq"], transport_options=options)
    app = celery_producer(redis_server.url, options)
    app.send_task("tests.noop", queue="pq", countdown=600)
    app.send_task("tests.noop", queue="waiting", priority=9)
    assert redis_server.client().exists("pfx:waiting\x06\x169")
    exporter = start_exporter("--broker-url", redis_server.url, "--global-keyprefix", "pfx:")
    samples = exporter.wait_for("celery_queue_unacked", 1, queue_name="pq")
    assert sample(samples, "celery_queue_length", queue_name="waiting") == 1
    assert sample(samples, "celery_queue_priority_length", queue_name="waiting", priority="9") == 1
    assert not [k for k in samples if k[0] == "celery_queue_length" and "pfx" in str(k[1])]


def test_stamped_producer_gives_exact_age(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url, stamp=True)
    app.send_task("tests.noop", queue="stamped", priority=9)  # oldest, in another priority list
    time.sleep(1.5)
    app.send_task("tests.noop", queue="stamped")
    message = redis_server.client().lindex("stamped", -1)
    assert b'"x-published-at": ' in message
    exporter = start_exporter("--broker-url", redis_server.url)
    age = exporter.value("celery_queue_oldest_message_age_seconds", queue_name="stamped")
    assert 1.5 <= age < 60


def test_unstamped_producer_counts_from_first_sight(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue="plain")
    # A producer may also set the header by hand: the exporter takes it as is.
    app.send_task("tests.noop", queue="handmade", headers={"x-published-at": time.time() - 100})
    assert b"x-published-at" not in redis_server.client().lindex("plain", -1)
    time.sleep(1.5)
    exporter = start_exporter("--broker-url", redis_server.url)
    samples = exporter.scrape()
    assert sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="plain") < 1.5
    assert 100 <= sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="handmade") < 160
    wait_value(exporter, "celery_queue_oldest_message_age_seconds", lambda v: v >= 1, queue_name="plain")
    # the oldest leaves: age restarts from the next message's first sight
    redis_server.client().rpop("plain")
    exporter.wait_for("celery_queue_oldest_message_age_seconds", 0.0, queue_name="plain")
