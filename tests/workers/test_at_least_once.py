"""At-least-once delivery on Redis, shown with real prefork workers killed by SIGKILL.

kombu keeps every delivered, unacknowledged message in the `unacked` hash (score in
`unacked_index` = fetch time). A late-ack task stays there while it runs; an early-ack task
leaves it when the pool starts it. After a crash nobody acks, and `restore_visible` puts
entries older than the visibility timeout back on their list: a worker runs it once when it
connects (and then on a slow periodic sweep, ~100 s by default). So: kill the worker, let the
visibility timeout pass, start a new worker, and its startup sweep redelivers only ack_task.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.procs import RedisServer, wait_until
from tests.workers.helpers import kill_group, make_app, queued_messages, start_worker, unacked
from workers.runs import runs

VISIBILITY_TIMEOUT = 4
TASK_SECONDS = 4  # long enough to be killed mid-run, short enough for the rerun to finish soon


def test_ack_task_runs_again_after_a_crash_and_no_ack_task_is_lost(redis_server: RedisServer, tmp_path: Path) -> None:
    env = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    app = make_app(redis_server)
    results = redis_server.client(db=1)
    ack_name, no_ack_name = "workers.tasks.ack_task", "workers.tasks.no_ack_task"

    first = start_worker("first", redis_server, tmp_path, "default", pool="prefork", concurrency=2, env=env)
    try:
        ack = app.tasks[ack_name].delay(TASK_SECONDS)
        no_ack = app.tasks[no_ack_name].delay(TASK_SECONDS)
        wait_until(
            lambda: runs(results, ack_name) == {ack.id: 1} and runs(results, no_ack_name) == {no_ack.id: 1},
            15,
            "both tasks running in the pool",
        )
        # no_ack_task is acknowledged by the main process once the pool reports it started:
        # wait for that, so the crash below cannot fall between start and ack.
        wait_until(lambda: len(unacked(redis_server)) == 1, 10, "no_ack_task acknowledged")
    finally:
        kill_group(first)

    held = list(unacked(redis_server).values())
    assert [m["headers"]["id"] for m in held] == [ack.id], "only the late-ack task is held unacknowledged"
    assert runs(results, ack_name) == {ack.id: 1}, "killed before ack_task finished"
    assert not queued_messages(redis_server, "default")  # no_ack_task's message is gone from Redis

    # Start the new worker once the held message is older than the visibility timeout, so its
    # startup sweep is the one that restores it (deterministic; no waiting for the ~100 s sweep).
    fetched_at = max(score for _, score in redis_server.client().zrange("unacked_index", 0, -1, withscores=True))
    time.sleep(max(0.0, fetched_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))

    second = start_worker("second", redis_server, tmp_path, "default", pool="prefork", concurrency=2, env=env)
    try:
        assert ack.get(timeout=TASK_SECONDS + 15) == TASK_SECONDS
        assert runs(results, ack_name) == {ack.id: 2}, "ack_task ran again, under the same id"
        assert "redelivered=True" in second.log()
        assert runs(results, no_ack_name) == {no_ack.id: 1}, "no_ack_task never ran again"
        assert no_ack.state == "PENDING"  # it never finished anywhere
        assert unacked(redis_server) == {}
        assert not queued_messages(redis_server, "default")
    finally:
        second.stop()
        app.close()
