"""Restarts of the monitoring itself: Flower (its counters start from zero again), Prometheus
(its TSDB is on disk), Alertmanager (its notification log and silences are on disk), and the
alert receiver being away for a while (Alertmanager retries until it is back)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from native import components
from native.components import Layout
from tests.faults.support import Report, delivered, delivered_at, producer, publish
from tests.grafana.queries import QueryError, iter_queries, run_query
from tests.support.procs import REPO, wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow

ALL_JOBS = {"prometheus", "alertmanager", "celery-queue-exporter", "flower"}


def backlog(stack: LocalStack, queue: str, status: str = "firing") -> list[dict]:
    return [a for a in delivered(stack, "CeleryQueueBacklog", status) if a["labels"].get("queue_name") == queue]


# -- Flower ------------------------------------------------------------------------------------

FAILED = 'flower_events_total{type="task-failed", task="workers.tasks.sqrt_task"}'


def flower_events(stack: LocalStack, kind: str = "task-failed", task: str = "workers.tasks.sqrt_task") -> float:
    text = requests.get(stack.url("flower") + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "flower_events_total" and s.labels.get("type") == kind and s.labels.get("task") == task:
                return s.value
    return 0.0


def flower_failed(stack: LocalStack) -> float:
    return flower_events(stack)


def test_flower_restart_counters_reset_rates_and_alerts_hold(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(LocalStack(tmp_path))
    app = producer(stack)
    sqrt = app.tasks["workers.tasks.sqrt_task"]
    before, after = 25, 10
    # One failure first, scraped: a counter series that appears already at 25 counts as 0 in increase().
    sqrt.delay(-1)
    wait_until(lambda: stack.query(f"{FAILED} == 1"), 30, "the first failure in Prometheus")
    for _ in range(before - 1):
        sqrt.delay(-1)
    wait_until(lambda: flower_failed(stack) == before, 30, f"Flower counting {before} failures")
    wait_until(lambda: delivered(stack, "CeleryTaskFailureRateHigh"), 60, "CeleryTaskFailureRateHigh delivered")
    report.injected(f"{before} failing sqrt_task runs (CeleryTaskFailureRateHigh fired), then Flower restarted")

    restarted_wall = time.time()
    stack.restart("flower")
    wait_until(lambda: stack.targets_up() == ALL_JOBS, 30, "Flower scraped again")
    # Celery events are pub/sub: what is sent before the new Flower subscribes is never counted.
    # Wait until it hears events (a probe task) before the failures it must count.
    add = app.tasks["workers.tasks.add"]

    def hears() -> bool:
        add.delay(0, 0)
        time.sleep(0.5)
        return flower_events(stack, "task-succeeded", "workers.tasks.add") > 0

    wait_until(hears, 30, "the new Flower receiving events")
    report.observed(f"the new Flower counts events {time.time() - restarted_wall:.1f}s after the restart began")
    for _ in range(after):
        sqrt.delay(-1)
    wait_until(lambda: flower_failed(stack) == after, 30, "the new Flower counting the new failures")
    report.observed(f"the new Flower's counter starts at 0: {FAILED} = {after} (was {before})")
    time.sleep(3)  # a few scrapes and rule evaluations with the reset counter

    increase = float(stack.query(f"sum(increase({FAILED}[5m]))")[0]["value"][1])
    recorded = stack.query('task:flower_task_completions:increase5m{task="workers.tasks.sqrt_task"}')
    ratio = stack.query('task:flower_task_failures:ratio_rate5m{task="workers.tasks.sqrt_task"}')
    report.figure(f"increase(task-failed[5m]) across the restart, {before + after} failures run", increase)
    assert before + after <= increase < (before + after) * 1.3, "the counter reset is seen as a reset, not a drop"
    assert recorded and float(recorded[0]["value"][1]) >= before + after
    assert ratio and float(ratio[0]["value"][1]) == 1.0

    # The rate-based alert never resolved: no resolved notification, still firing.
    assert not delivered(stack, "CeleryTaskFailureRateHigh", "resolved")
    assert [a for a in stack.prometheus_alerts() if a["labels"]["alertname"] == "CeleryTaskFailureRateHigh"]
    assert delivered_at(stack, "CeleryFlowerDown", after=restarted_wall) is None
    report.observed("CeleryTaskFailureRateHigh stayed firing, never resolved; CeleryFlowerDown not sent")

    # Every dashboard query still runs, and nothing derived from Flower's counters goes negative.
    end = time.time()
    errors, negative, checked = [], [], 0
    for q in iter_queries():
        if "flower_" not in q.expr and "task:" not in q.expr:
            continue
        checked += 1
        try:
            result = run_query(stack.url("prometheus"), q.expr, start=end - 120, end=end, step=1)
        except QueryError as exc:
            errors.append(f"{q.where()}: {exc}")
            continue
        for series in result:
            values = [float(v) for _, v in series.get("values", [])] or [float(series["value"][1])]
            if any(v < 0 for v in values):
                negative.append(q.where())
    report.observed(
        f"{checked} Flower-based dashboard queries over the restart: {len(errors)} errors, "
        f"{len(negative)} with negative values"
    )
    assert not errors, errors
    assert not negative, negative
    app.close()


# -- Prometheus --------------------------------------------------------------------------------


def raw_samples(stack: LocalStack, selector: str, at: float) -> set[tuple[str, float, str]]:
    """Every stored sample of `selector` in the 10 minutes before `at`: (series, time, value)."""
    reply = requests.get(
        stack.url("prometheus") + "/api/v1/query", params={"query": f"{selector}[10m]", "time": at}, timeout=10
    ).json()
    out = set()
    for series in reply["data"]["result"]:
        name = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        out.update((name, float(t), v) for t, v in series["values"])
    return out


def test_prometheus_restart_keeps_its_data(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(LocalStack(tmp_path))
    publish(stack, "parked", 1001)
    wait_until(lambda: backlog(stack, "parked"), 60, "CeleryQueueBacklog delivered")
    selector = '{job=~"celery-queue-exporter|flower", __name__=~"up|celery_queue_length|flower_events_total"}'

    for sig in (signal.SIGTERM, signal.SIGKILL):
        time.sleep(2)
        at = time.time()
        kept = raw_samples(stack, selector, at)
        how = "stopped (SIGTERM)" if sig == signal.SIGTERM else "killed (SIGKILL)"
        report.injected(f"Prometheus {how} and started again on the same TSDB folder")
        stack.restart("prometheus", sig)
        wait_until(lambda: stack.targets_up() == ALL_JOBS, 30, "Prometheus scraping again")
        now = raw_samples(stack, selector, at)
        lost = kept - now
        report.lost(f"samples of the 10 min before Prometheus was {how}, of {len(kept)}", len(lost))
        assert not lost, sorted(lost)[:5]

    time.sleep(6)  # the alert goes pending and firing again in the new Prometheus; Alertmanager dedups
    notes = backlog(stack, "parked")
    report.observed(f"CeleryQueueBacklog(parked) notifications after two Prometheus restarts: {len(notes)}")
    assert len(notes) == 1


# -- Alertmanager ------------------------------------------------------------------------------


def silence(stack: LocalStack, queue: str) -> str:
    now = datetime.now(UTC)
    body = {
        "matchers": [
            {"name": "alertname", "value": "CeleryQueueBacklog", "isRegex": False, "isEqual": True},
            {"name": "queue_name", "value": queue, "isRegex": False, "isEqual": True},
        ],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "tests/faults",
        "comment": f"{queue} is being drained on purpose",
    }
    reply = requests.post(stack.url("alertmanager") + "/api/v2/silences", json=body, timeout=5)
    reply.raise_for_status()
    return reply.json()["silenceID"]


def active_silences(stack: LocalStack) -> set[str]:
    silences = requests.get(stack.url("alertmanager") + "/api/v2/silences", timeout=5).json()
    return {s["id"] for s in silences if s["status"]["state"] == "active"}


def am_alerts(stack: LocalStack, queue: str) -> list[dict]:
    alerts = requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == "CeleryQueueBacklog" and a["labels"].get("queue_name") == queue
    ]


def shipped_maintenance_interval() -> str:
    """Alertmanager's --data.maintenance-interval as docker-compose.yml and the native runner set it."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["alertmanager"]["command"]
    flags = [f for f in compose if f.startswith("--data.maintenance-interval=")]
    assert flags, "docker-compose.yml sets Alertmanager's --data.maintenance-interval"
    native = components.alertmanager(Layout(run_dir=REPO, broker_url="redis://"), "alertmanager").argv
    assert flags[0] in native, "the native runner sets the same --data.maintenance-interval"
    return flags[0].split("=", 1)[1]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return int(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)


def test_alertmanager_restart_no_duplicates_and_silences_kept(tmp_path: Path, stacks, report: Report) -> None:
    # Alertmanager writes its silences and notification log to disk when it stops, and every
    # --data.maintenance-interval (15m by default; our runners set less): a crash loses what
    # changed since. Prometheus re-sends firing alerts every second here (1 min by default), so a
    # new Alertmanager has them again at once and would notify again if it had forgotten it did.
    interval = shipped_maintenance_interval()
    stack = stacks(
        LocalStack(
            tmp_path,
            args={
                "prometheus": ["--rules.alert.resend-delay=1s"],
                "alertmanager": [f"--data.maintenance-interval={interval}"],
            },
        )
    )
    hushed = silence(stack, "hushed")
    publish(stack, "loud", 1001)
    publish(stack, "hushed", 1001)
    wait_until(lambda: backlog(stack, "loud"), 60, "CeleryQueueBacklog(loud) delivered")
    wait_until(
        lambda: [a for a in am_alerts(stack, "hushed") if a["status"]["silencedBy"] == [hushed]],
        30,
        "the hushed queue's alert silenced",
    )
    report.injected("CeleryQueueBacklog notified for queue loud, silenced for queue hushed")

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if sig == signal.SIGTERM:
            how = "stopped (SIGTERM)"
        else:
            how = f"killed (SIGKILL) {interval} after the last change"
            time.sleep(seconds(interval) + 2)
        report.injected(f"Alertmanager {how}, started again on the same data folder")
        stack.restart("alertmanager", sig)
        wait_until(lambda: am_alerts(stack, "loud") and am_alerts(stack, "hushed"), 30, "alerts re-sent")
        time.sleep(6)  # group_wait 1s + group_interval 2s, twice over: any duplicate would have gone out
        kept = hushed in active_silences(stack)
        loud, quiet = len(backlog(stack, "loud")), len(backlog(stack, "hushed"))
        report.observed(f"silence {'kept' if kept else 'LOST'}; notifications for loud: {loud}, for hushed: {quiet}")
        report.lost(f"silences, Alertmanager {how}", 0 if kept else 1)
        report.figure(f"duplicate notifications, Alertmanager {how}", loud - 1)
        assert kept
        assert loud == 1, "no second notification for an alert already notified"
        assert quiet == 0


# -- the receiver ------------------------------------------------------------------------------


def am_counter(stack: LocalStack, name: str) -> float:
    text = requests.get(stack.url("alertmanager") + "/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("integration") == "webhook":
                total += s.value
    return total


def test_receiver_down_alertmanager_retries_until_it_is_back(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(LocalStack(tmp_path))
    stack.stop_component("receiver")
    down_at = time.monotonic()
    publish(stack, "waiting", 1001)
    report.injected("receiver stopped; 1001 tasks published (CeleryQueueBacklog will fire)")
    wait_until(lambda: am_counter(stack, "alertmanager_notifications_failed_total") > 0, 60, "a failed notification")
    while time.monotonic() - down_at < 10:
        time.sleep(1)
    failed = am_counter(stack, "alertmanager_notifications_failed_total")
    report.observed(f"receiver away {time.monotonic() - down_at:.0f}s: Alertmanager failed {failed:.0f} attempts")

    stack.start_component("receiver")
    back_wall = time.time()
    wait_until(lambda: backlog(stack, "waiting"), 60, "the notification once the receiver is back")
    arrived = delivered_at(stack, "CeleryQueueBacklog") - back_wall
    time.sleep(5)
    count = len(backlog(stack, "waiting"))
    report.figure("notification arrived, seconds after the receiver was back (group_interval 2s)", arrived, "s")
    report.lost("notifications while the receiver was down", 0 if count else 1)
    report.observed(f"CeleryQueueBacklog(waiting) notifications received: {count}")
    assert count == 1
