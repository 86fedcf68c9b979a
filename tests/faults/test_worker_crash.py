"""A worker is SIGKILLed in the middle of late-ack tasks: the monitoring sees the messages held
unacknowledged and alerts; the worker's replacement (what supervisord or compose's restart policy
starts) gets them redelivered once the visibility timeout has passed, and they complete."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.support import Report, compose_stack, delivered, delivered_at, producer, rule_exists
from tests.support.procs import wait_until
from workers.runs import runs

pytestmark = pytest.mark.slow

VISIBILITY_TIMEOUT = 5  # shortened (the default is 1 h), for the workers and the exporter alike
TASKS = 4  # the worker's concurrency: all of them running when it dies
TASK_SECONDS = 6


def test_worker_sigkill_mid_task(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(
        compose_stack(
            tmp_path,
            extra_env={"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)},
            args={"exporter": ["--visibility-timeout", str(VISIBILITY_TIMEOUT), "--consumers-interval", "2"]},
        )
    )
    app = producer(stack)
    results = stack.redis.client(db=1)
    tasks = [app.tasks["workers.tasks.ack_task"].delay(TASK_SECONDS) for _ in range(TASKS)]
    wait_until(lambda: len(runs(results, "workers.tasks.ack_task")) == TASKS, 20, "every task running")
    assert rule_exists("CeleryWorkerDown"), "prometheus/rules/production defines CeleryWorkerDown"
    wait_until(lambda: stack.query('celery_worker_up{worker=~"e2e-worker@.*"} == 1'), 20, "celery_worker_up 1")

    stack.stop_component("worker", signal.SIGKILL)
    killed_wall = time.time()
    report.injected(
        f"{TASKS} late-ack tasks of {TASK_SECONDS}s running; worker main process SIGKILLed "
        f"(visibility timeout {VISIBILITY_TIMEOUT}s)"
    )

    wait_until(
        lambda: stack.exporter_value("celery_queue_unacked", queue_name="default") == TASKS,
        10,
        "the exporter counting the held messages",
    )
    report.observed(f"celery_queue_unacked{{default}} = {TASKS}: the killed worker's messages are held")
    wait_until(lambda: delivered(stack, "CeleryUnackedStuck"), 60, "CeleryUnackedStuck at the receiver")
    stuck_at = delivered_at(stack, "CeleryUnackedStuck", after=killed_wall) - killed_wall
    report.figure("CeleryUnackedStuck delivered after the kill (visibility 5s, for: 5s)", stuck_at, "s")

    wait_until(lambda: delivered(stack, "CeleryWorkerDown"), 60, "CeleryWorkerDown at the receiver")
    down_at = delivered_at(stack, "CeleryWorkerDown", after=killed_wall) - killed_wall
    report.figure("CeleryWorkerDown delivered after the kill (for: 5s)", down_at, "s")
    online = stack.query('flower_worker_online{worker=~"e2e-worker@.*"}')
    report.observed(
        f"flower_worker_online of the killed worker: {[s['value'][1] for s in online]} "
        "(Flower keeps a SIGKILLed worker online: why CeleryWorkerDown reads the exporter)"
    )

    # The replacement worker restores, at start, every held message older than the visibility timeout.
    stack.start_component("worker")
    restarted_wall = time.time()
    report.injected("a new worker started under the same name (as supervisord/compose restart it)")
    lost = []
    for result in tasks:
        try:
            result.get(timeout=TASK_SECONDS + 30)
        except Exception:  # noqa: BLE001 - a task that never completes is what is counted here
            lost.append(result.id)
    done_wall = time.time()
    started = runs(results, "workers.tasks.ack_task")
    report.lost("late-ack tasks running when the worker was killed", len(lost))
    assert not lost
    assert all(started[r.id] == 2 for r in tasks), started
    assert "redelivered=True" in stack.procs["worker"].log()
    report.observed(f"all {TASKS} ran again (redelivered=True) and succeeded")
    report.figure("kill to all redelivered tasks done", done_wall - killed_wall, "s")
    report.figure("replacement worker start to all redelivered tasks done", done_wall - restarted_wall, "s")

    wait_until(lambda: stack.exporter_value("celery_queue_unacked", queue_name="default") == 0, 10, "unacked 0")
    wait_until(lambda: delivered(stack, "CeleryUnackedStuck", "resolved"), 60, "CeleryUnackedStuck resolved")
    report.observed("celery_queue_unacked back to 0; CeleryUnackedStuck resolved at the receiver")
    app.close()
