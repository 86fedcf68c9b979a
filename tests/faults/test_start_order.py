"""Components started in the worst order converge without a restart: Prometheus before any of
its targets, the exporter and Flower before Redis exists, Flower before any worker, the worker
last. Nothing is restarted: every process keeps its pid."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.faults.support import Report, compose_stack
from tests.support.procs import wait_until
from tests.support.stack import FLOWER_AUTH

pytestmark = pytest.mark.slow

ALL_JOBS = {"prometheus", "alertmanager", "celery-queue-exporter", "flower"}


def test_everything_converges_whatever_starts_first(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(
        compose_stack(tmp_path, args={"exporter": ["--consumers-interval", "5"]}),
        defer={"redis", "worker", "flower", "exporter"},
    )
    t0 = time.monotonic()
    wait_until(lambda: stack.targets_up() == {"prometheus", "alertmanager"}, 30, "the two targets that exist")
    report.injected("Prometheus, Alertmanager and the receiver started first: 2 of 4 targets exist")

    stack.start_component("exporter")  # ready = answers /metrics, whatever it finds
    assert stack.exporter_value("celery_broker_up") == 0
    stack.start_component("flower", wait=False)
    report.injected("exporter and Flower started while no Redis exists")
    time.sleep(5)
    flower_alive_without_redis = stack.procs["flower"].alive()
    report.observed(
        f"exporter answers with celery_broker_up 0; Flower without Redis: "
        f"{'alive' if flower_alive_without_redis else 'exited'}"
    )
    assert stack.exporter_value("celery_broker_up") == 0
    assert flower_alive_without_redis

    stack.start_component("redis")
    redis_at = time.monotonic()
    report.injected("Redis started (no worker yet)")
    wait_until(lambda: stack.exporter_value("celery_broker_up") == 1, 30, "the exporter reading Redis")
    exporter_converged = time.monotonic() - redis_at
    stack.wait_ready("flower", timeout=60)
    flower_converged = time.monotonic() - redis_at
    wait_until(lambda: stack.targets_up() == ALL_JOBS, 30, "every target up in Prometheus")
    report.figure("exporter: celery_broker_up 1, seconds after Redis started", exporter_converged, "s")
    report.figure("Flower healthy, seconds after Redis started", flower_converged, "s")

    pids = {name: proc.pid for name, proc in stack.procs.items()}
    stack.start_component("worker")
    worker_at = time.monotonic()
    report.injected("the worker started last")

    def flower_sees_worker() -> bool:
        workers = requests.get(stack.url("flower") + "/api/workers?refresh=1", auth=_auth(), timeout=5).json()
        return any(name.startswith("e2e-worker@") for name in workers)

    wait_until(flower_sees_worker, 60, "Flower listing the worker")
    flower_sees = time.monotonic() - worker_at
    wait_until(
        lambda: stack.query('flower_worker_online{worker=~"e2e-worker@.*"} == 1'), 30, "the worker online in Prometheus"
    )
    in_prometheus = time.monotonic() - worker_at
    consumers = 'celery_queue_consumers{queue_name="default"} == 1'
    wait_until(lambda: stack.query(consumers), 60, "the exporter counting the worker as a consumer")
    consumers_seen = time.monotonic() - worker_at
    report.figure("Flower lists the worker, seconds after it started", flower_sees, "s")
    report.figure("flower_worker_online in Prometheus, seconds after the worker started", in_prometheus, "s")
    report.figure(
        "celery_queue_consumers in Prometheus, seconds after the worker started (--consumers-interval 5)",
        consumers_seen,
        "s",
    )

    for job in ("celery-queue-exporter", "flower"):
        assert stack.query(f'up{{job="{job}"}} == 1'), job
    assert {name: proc.pid for name, proc in stack.procs.items() if name in pids} == pids
    assert all(proc.alive() for proc in stack.procs.values())
    report.observed(f"all converged {time.monotonic() - t0:.0f}s after the first start; no process restarted")


def _auth() -> tuple[str, str]:
    user, password = FLOWER_AUTH.split(":", 1)
    return user, password
