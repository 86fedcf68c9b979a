"""Queue discovery, celery_queue_length over all priorities and celery_broker_up, with real Celery."""

from __future__ import annotations

from tests.support.exporter import fetch


def test_discovers_queues_a_producer_declared_and_sums_priorities(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url)
    for priority in range(10):
        app.send_task("tests.noop", queue="prio", priority=priority)
    app.send_task("tests.noop", queue="plain")
    exporter = start_exporter("--broker-url", redis_server.url)

    samples = exporter.wait_for("celery_queue_length", 10, queue_name="prio")
    assert samples[("celery_queue_length", (("queue_name", "plain"),))] == 1
    # kombu: priority p goes to the largest step <= p of 0,3,6,9
    per_step = {
        step: samples[("celery_queue_priority_length", (("priority", step), ("queue_name", "prio")))]
        for step in ("0", "3", "6", "9")
    }
    assert per_step == {"0": 3, "3": 3, "6": 3, "9": 1}
    assert samples[("celery_broker_up", ())] == 1
    # Celery's own event and remote-control queues are not work
    assert not [k for k in samples if k[0] == "celery_queue_length" and "pidbox" in str(k[1])]


def test_configured_queue_reports_zero_before_it_exists(redis_server, start_exporter):
    exporter = start_exporter("--broker-url", redis_server.url, "--queues", "emails, reports")
    samples = exporter.scrape()
    assert samples[("celery_queue_length", (("queue_name", "emails"),))] == 0
    assert samples[("celery_queue_length", (("queue_name", "reports"),))] == 0
    assert samples[("celery_exporter_queues", ())] == 2
    from celery_queue_exporter import __version__

    assert samples[("celery_exporter_build_info", (("version", __version__),))] == 1
    assert 0 < samples[("celery_exporter_scrape_duration_seconds", ())] < 10
    assert samples[("celery_broker_visibility_timeout_seconds", ())] == 3600
    assert samples[("celery_exporter_scrape_errors_total", (("reason", "redis"),))] == 0


def test_declared_empty_queue_reports_zero(redis_server, start_exporter, start_worker):
    # A worker declares its queue (binding) without any message ever sent to it.
    start_worker(redis_server.url, ["idle"])
    exporter = start_exporter("--broker-url", redis_server.url)
    exporter.wait_for("celery_queue_length", 0, queue_name="idle")


def test_broker_down_then_back(redis_server, start_exporter, celery_producer):
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue="jobs")
    app.close()
    exporter = start_exporter("--broker-url", redis_server.url, "--redis-timeout", "1")
    exporter.wait_for("celery_queue_length", 1, queue_name="jobs")

    redis_server.client().save()  # keep the data across the restart
    redis_server.stop()
    samples = exporter.wait_for("celery_broker_up", 0)
    assert not [k for k in samples if k[0] == "celery_queue_length"]
    assert samples[("celery_exporter_scrape_errors_total", (("reason", "redis"),))] >= 1

    redis_server.start()
    exporter.wait_for("celery_broker_up", 1)
    exporter.wait_for("celery_queue_length", 1, queue_name="jobs")


def test_landing_page_and_404(redis_server, start_exporter):
    exporter = start_exporter("--broker-url", redis_server.url)
    status, body = fetch(f"http://127.0.0.1:{exporter.port}/")
    assert status == 200 and "/metrics" in body
    try:
        fetch(f"http://127.0.0.1:{exporter.port}/nope")
    except Exception as exc:  # noqa: BLE001
        assert "404" in str(exc)
    else:
        raise AssertionError("expected a 404")


def test_round_trips_do_not_grow_with_queues(redis_server, start_exporter):
    client = redis_server.client()
    exporter = start_exporter("--broker-url", redis_server.url, "--queues", "a")
    exporter.scrape()
    assert exporter.value("celery_exporter_redis_round_trips") == 1
    for i in range(300):
        client.sadd(f"_kombu.binding.q{i}", f"q{i}\x06\x16\x06\x16q{i}")
        client.lpush(f"q{i}", "{}", "{}")
    samples = exporter.scrape()
    assert sample_of(samples, "celery_exporter_queues") == 301
    # binding sets never seen: their members, then the new queues' lists (whatever their number)
    assert sample_of(samples, "celery_exporter_redis_round_trips") == 3
    samples = exporter.scrape()
    assert sample_of(samples, "celery_queue_length", queue_name="q299") == 2
    assert sample_of(samples, "celery_exporter_redis_round_trips") == 1
    # unacked entries add one round trip (the scores of each queue's oldest), whatever their number
    for i in range(200):
        client.hset("unacked", f"t{i}", f'[{{"x": 1}}, "", "q{i}"]')
        client.zadd("unacked_index", {f"t{i}": i})
    exporter.scrape()  # resolves the new entries once
    samples = exporter.scrape()
    assert sample_of(samples, "celery_queue_unacked", queue_name="q7") == 1
    assert sample_of(samples, "celery_exporter_redis_round_trips") == 2


def sample_of(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))
