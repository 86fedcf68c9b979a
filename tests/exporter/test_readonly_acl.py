"""The exporter works for a Redis ACL user that has no write command (the line the README documents)."""

from __future__ import annotations

import pytest
import redis

from tests.support.exporter import sample
from tests.support.procs import REPO

PASSWORD = "s3cret-Pa55"
# The README's older rule (still works, in scripts mode; it refuses CLIENT TRACKING).
ACL_RULES = (
    "on >{password} ~* resetchannels -@all +@read -@dangerous +@connection -client +client|setname "
    "+select +evalsha_ro +eval_ro"
)


def test_read_only_acl_user(redis_server, start_exporter, start_worker, celery_producer):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "exporter", *ACL_RULES.format(password=PASSWORD).split())
    ro = redis.Redis(host="127.0.0.1", port=redis_server.port, username="exporter", password=PASSWORD)
    assert ro.llen("anything") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.lpush("anything", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.publish("chan", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.execute_command("EVAL", "return 1", 0)  # a script that might write is refused too

    start_worker(redis_server.url, ["held"])
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue="held", countdown=600)
    for priority in (0, 5, 9):
        app.send_task("tests.noop", queue="waiting", priority=priority)

    url = f"redis://exporter:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    exporter = start_exporter("--broker-url", url, "--consumers-interval", "0.5", "--consumers-timeout", "0.5")
    samples = exporter.wait_for("celery_queue_unacked", 1, queue_name="held")
    assert sample(samples, "celery_broker_up") == 1
    assert sample(samples, "celery_queue_length", queue_name="waiting") == 3
    text = exporter.text()
    assert PASSWORD not in text
    # inspect needs PUBLISH: without it the consumers metric is absent and the log says why
    assert "celery_queue_consumers{" not in text

    def logged() -> bool:
        return "inspect active_queues failed" in exporter.proc.log()

    from tests.support.procs import wait_until

    wait_until(logged, 15, "the log line about inspect")
    log = exporter.proc.log()
    assert "NOPERM" in log or "no permissions" in log
    assert PASSWORD not in log
    # ...and the scrape says so too: the reading is on, and refused (not merely failing)
    samples = exporter.scrape()
    assert sample(samples, "celery_exporter_consumers_reading_enabled") == 1
    assert sample(samples, "celery_exporter_consumers_reading_errors_total", reason="refused") >= 1
    assert sample(samples, "celery_exporter_consumers_reading_errors_total", reason="failed") == 0


# The broker of this stack (redis/users.acl): read-only, plus only the keys `inspect` owns.
EXPORTER_USER = next(
    line for line in (REPO / "redis" / "users.acl").read_text().splitlines() if line.startswith("user exporter on ")
)
INSPECT_ACL_RULES = "on >{password} " + EXPORTER_USER.removeprefix("user exporter on ")


def test_acl_with_inspect_keys_only_gives_consumers(redis_server, start_exporter, start_worker):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "exporter", *INSPECT_ACL_RULES.format(password=PASSWORD).split())
    ro = redis.Redis(host="127.0.0.1", port=redis_server.port, username="exporter", password=PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.lpush("default", "x")  # no write to a task queue
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.hset("unacked", "t", "x")

    start_worker(redis_server.url, ["watched"])
    url = f"redis://exporter:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    exporter = start_exporter("--broker-url", url, "--consumers-interval", "0.5", "--consumers-timeout", "1")
    exporter.wait_for("celery_queue_consumers", 1, queue_name="watched")
    assert "inspect active_queues failed" not in exporter.proc.log()


# The plainest read-only user: no script command at all. Nothing else is needed by redis-py or the
# exporter on Redis 7.0 (HELLO, AUTH, CLIENT SETNAME and CLIENT TRACKING are all @connection).
PLAIN_ACL_RULES = "on >{password} ~* resetchannels -@all +@read +@connection"


def _queue_samples(samples) -> dict:
    names = ("celery_queue_length", "celery_queue_priority_length", "celery_queue_unacked")
    return {k: v for k, v in samples.items() if k[0] in names}


def test_plain_read_only_user_reads_everything_without_scripts(
    redis_server, start_exporter, start_worker, celery_producer
):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "plain", *PLAIN_ACL_RULES.format(password=PASSWORD).split())
    ro = redis.Redis(host="127.0.0.1", port=redis_server.port, username="plain", password=PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.execute_command("EVAL_RO", "return 1", 0)
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.lpush("anything", "x")

    start_worker(redis_server.url, ["held"])
    app = celery_producer(redis_server.url)
    app.send_task("tests.noop", queue="held", countdown=600)  # unacked: its queue found by HMGET
    for priority in (0, 5, 9):
        app.send_task("tests.noop", queue="waiting", priority=priority)

    url = f"redis://plain:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    plain = start_exporter("--broker-url", url)
    scripted = start_exporter("--broker-url", redis_server.url)
    samples = plain.wait_for("celery_queue_unacked", 1, queue_name="held")
    assert sample(samples, "celery_broker_up") == 1
    assert sample(samples, "celery_exporter_redis_read_mode", mode="plain") == 1
    assert sample(samples, "celery_exporter_redis_read_mode", mode="scripts") == 0
    assert sample(samples, "celery_queue_length", queue_name="waiting") == 3
    assert sample(samples, "celery_queue_oldest_message_age_seconds", queue_name="waiting") >= 0
    assert sample(samples, "celery_queue_unacked_oldest_age_seconds", queue_name="held") >= 0
    reference = scripted.wait_for("celery_queue_unacked", 1, queue_name="held")
    assert sample(reference, "celery_exporter_redis_read_mode", mode="scripts") == 1
    assert _queue_samples(samples) == _queue_samples(reference)  # same metrics, same totals
    plain.scrape()
    log = plain.proc.log()
    assert log.count("reading Redis in plain mode") == 1, log  # said once, with the reason
    assert "NOPERM" in log or "no permissions" in log
    assert PASSWORD not in log


def test_scripts_disabled_by_rename_command_fall_back_to_plain(tmp_path, start_exporter):
    from native.processes import RedisServer

    server = RedisServer(tmp_path / "renamed", extra_args=["--rename-command", "EVALSHA_RO", '""']).start()
    try:
        client = server.client()
        client.sadd("_kombu.binding.jobs", "jobs\x06\x16\x06\x16jobs")
        client.lpush("jobs", '{"properties": {"delivery_tag": "t1"}}')
        client.hset("unacked", "t2", '[{"properties": {}}, "", "jobs"]')
        client.zadd("unacked_index", {"t2": 1})
        exporter = start_exporter("--broker-url", server.url)
        samples = exporter.wait_for("celery_queue_unacked", 1, queue_name="jobs")
        assert sample(samples, "celery_queue_length", queue_name="jobs") == 1
        assert sample(samples, "celery_exporter_redis_read_mode", mode="plain") == 1
    finally:
        server.stop()
