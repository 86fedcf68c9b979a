"""Redis, the broker, stops for 30 s and comes back: the monitoring keeps answering and says so,
the workers reconnect by themselves, and no task that was queued or running is lost.

The Redis is the one docker-compose runs (redis/start.sh, redis/redis.conf: append-only file,
ACL users with passwords); it is stopped as `docker compose stop redis` does (SIGTERM) and
started again on the same port and data folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from celery.exceptions import TimeoutError as CeleryTimeoutError
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.support import Report, compose_stack, delivered, delivered_at, firing, producer, publish
from tests.support.procs import wait_until
from workers.runs import runs

pytestmark = pytest.mark.slow

OUTAGE_S = 30
PARKED = 1000  # tasks in a queue nobody consumes: they must all be there after the outage
RUNNING = 24  # late-ack tasks queued and running when Redis stops: each must complete
TASK_SECONDS = 2
VISIBILITY_TIMEOUT = 10  # redelivery of the late-ack tasks whose ack the outage swallowed


def scrape(url: str) -> tuple[int, float | None, float]:
    """(HTTP status, celery_broker_up, seconds the answer took) of one exporter scrape."""
    started = time.monotonic()
    reply = requests.get(url + "/metrics", timeout=10)
    took = time.monotonic() - started
    up = None
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == "celery_broker_up":
                up = sample.value
    return reply.status_code, up, took


def test_redis_stops_for_30s_and_returns(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(compose_stack(tmp_path, extra_env={"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}))
    app = producer(stack)
    results = stack.redis.client(db=1)

    publish(stack, "parked", PARKED)
    ack = [app.tasks["workers.tasks.ack_task"].delay(TASK_SECONDS) for _ in range(RUNNING)]
    wait_until(lambda: len(runs(results, "workers.tasks.ack_task")) >= 4, 20, "late-ack tasks running")
    queued = stack.redis.client().llen("default")
    report.injected(
        f"{PARKED} tasks parked in a queue nobody consumes, {RUNNING} late-ack tasks of {TASK_SECONDS}s "
        f"({queued} still queued, the rest running or done); then Redis stopped (SIGTERM) for {OUTAGE_S}s"
    )

    stack.stop_component("redis")
    stopped_at, stopped_wall = time.monotonic(), time.time()
    answers: list[tuple[int, float | None, float]] = []
    while time.monotonic() - stopped_at < OUTAGE_S:
        answers.append(scrape(stack.url("exporter")))
        time.sleep(0.5)
    fired = delivered_at(stack, "CeleryBrokerDown", "firing", after=stopped_wall)
    assert fired is not None, "CeleryBrokerDown reached the receiver during the outage"
    fired_at = fired - stopped_wall
    statuses = {status for status, _, _ in answers}
    ups = [up for _, up, _ in answers]
    slowest = max(took for _, _, took in answers)
    report.observed(
        f"exporter answered {len(answers)} scrapes during the outage, HTTP {sorted(statuses)}, "
        f"celery_broker_up {sorted(set(ups))}, slowest {slowest:.3f}s; CeleryBrokerDown delivered "
        f"{fired_at:.1f}s after the stop"
    )
    assert statuses == {200}
    assert ups[0] in (0, 1) and ups[-1] == 0 and all(up is not None for up in ups)
    assert stack.procs["worker"].alive() and stack.procs["flower"].alive() and stack.procs["exporter"].alive()

    stack.start_component("redis")
    back_at, back_wall = time.monotonic(), time.time()
    wait_until(lambda: scrape(stack.url("exporter"))[1] == 1, 30, "celery_broker_up 1 again")
    up_after = time.monotonic() - back_at
    report.observed(f"Redis back; celery_broker_up 1 after {up_after:.1f}s")

    parked_after = stack.redis.client().llen("parked")
    report.lost("parked tasks (queue nobody consumes)", PARKED - parked_after)
    assert parked_after == PARKED

    # The worker reconnects by itself (same process): a task published now runs.
    probe = app.tasks["workers.tasks.add"].delay(20, 22)
    assert probe.get(timeout=60) == 42
    reconnect = time.monotonic() - back_at
    report.figure("worker ran a new task, seconds after Redis returned", reconnect, "s")

    # Every late-ack task ends SUCCESS: queued ones run after the outage; those the worker held
    # (prefetched, or done but not acknowledged) are in kombu's unacked hash, and the sweep the
    # reconnected worker runs first puts back every one older than the visibility timeout (all
    # of them: the outage is longer) - at least once. One that ran during the outage ends
    # SUCCESS only because workers/config.py retries the result write (a FAILURE otherwise).
    missing, failed = [], []
    for result in ack:
        try:
            result.get(timeout=VISIBILITY_TIMEOUT + 60)
        except CeleryTimeoutError:
            missing.append(result.id)
        except Exception as exc:  # noqa: BLE001 - a task reported failed is what is counted here
            failed.append(f"{result.id}: {exc!r}")
    started = runs(results, "workers.tasks.ack_task")
    twice = sum(1 for r in ack if started.get(r.id, 0) > 1)
    report.lost("late-ack tasks queued or running when Redis stopped", len(missing))
    report.lost("late-ack tasks ended FAILURE (e.g. their result not stored)", len(failed))
    succeeded = RUNNING - len(missing) - len(failed)
    report.observed(f"{succeeded}/{RUNNING} late-ack tasks succeeded, {twice} of them ran twice")
    assert not missing and not failed, failed

    wait_until(lambda: delivered(stack, "CeleryBrokerDown", "resolved"), 60, "CeleryBrokerDown resolved")
    assert not firing(stack, "CeleryBrokerDown")
    resolved = delivered_at(stack, "CeleryBrokerDown", "resolved", after=stopped_wall) - back_wall
    report.figure("CeleryBrokerDown delivered after the stop (for: 5s in the test)", fired_at, "s")
    report.figure("CeleryBrokerDown resolved at the receiver after Redis returned", resolved, "s")
    report.figure("exporter scrapes answered during the outage", f"{len(answers)}/{len(answers)}")
    report.figure("slowest exporter scrape during the outage", slowest, "s")

    # Flower reconnected too: it counts the events of the tasks run after the outage.
    query = 'sum(flower_events_total{type="task-succeeded", task="workers.tasks.add"})'
    wait_until(lambda: stack.query(query), 30, "Flower's events of the probe task in Prometheus")
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    assert all(proc.alive() for proc in stack.procs.values())
    report.observed(f"no process restarted (pids {pids}); Flower counted the probe task")
    app.close()
