"""Beat schedules periodic_task, which reaches a worker that consumes only periodic_tasks."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import Proc, RedisServer, wait_until
from tests.workers.helpers import CELERY, broker_env, start_worker
from workers.runs import runs


def test_beat_sends_periodic_task_to_the_periodic_tasks_queue(redis_server: RedisServer, tmp_path: Path) -> None:
    schedule = tmp_path / "beat" / "celerybeat-schedule"
    schedule.parent.mkdir()
    env = {"CELERY_PERIODIC_SECONDS": "1", "CELERY_BEAT_SCHEDULE_FILE": str(schedule)}
    worker = start_worker("periodic", redis_server, tmp_path, "periodic_tasks", env=env)
    beat = Proc(
        "beat", [CELERY, "-A", "workers.app", "beat", "--loglevel=INFO"], tmp_path, env=broker_env(redis_server, **env)
    )
    try:
        ran = wait_until(
            lambda: len(runs(redis_server.client(db=1), "workers.tasks.periodic_task")) >= 2,
            20,
            "two runs of periodic_task",
        )
        assert ran
        assert "Sending due task periodic-task (workers.tasks.periodic_task)" in beat.log()
        assert "periodic tick at" in worker.log()
        assert list(schedule.parent.iterdir()), "beat keeps its schedule file where CELERY_BEAT_SCHEDULE_FILE says"
    finally:
        beat.stop()
        worker.stop()
