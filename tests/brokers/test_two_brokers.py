"""Two brokers on one stack, kept apart end to end.

Two real redis-servers, payments and orders, whose apps both have a queue `default`; one exporter
per broker, each Prometheus target labelled with its broker (prometheus/file_sd.py); Prometheus
with the generated rules, Alertmanager with the repository's routing, the receiver. A backlog on
payments' `default` gives one CeleryQueueBacklog at the receiver naming payments and none for
orders; every dashboard query keeps the two `default` queues apart, and the broker variable
narrows them to one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.grafana.queries import iter_queries, run_query
from tests.support.procs import wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow

BUSY, QUIET = "payments", "orders"
# What a series about one queue, worker or task must say: which broker it belongs to.
PER_BROKER_LABELS = ("queue_name", "worker", "task")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # The worker (on payments) does not consume `default`: tasks published there stay.
    s = LocalStack(
        Path(tmp_path_factory.mktemp("brokers")),
        broker_name=BUSY,
        more_brokers=(QUIET,),
        worker_queues="periodic_tasks",
    )
    with s.running():
        s.publish("--queue", "default", "--count", "1001", broker=BUSY)
        s.publish("--queue", "default", "--count", "5", broker=QUIET)
        wait_until(
            lambda: (
                s.exporter_value("celery_queue_length", broker=BUSY, queue_name="default") == 1001
                and s.exporter_value("celery_queue_length", broker=QUIET, queue_name="default") == 5
            ),
            30,
            "each exporter to see its broker's default queue",
        )
        yield s


def notified(stack: LocalStack, alertname: str) -> list[dict[str, Any]]:
    return [
        {**a, "group": r["payload"]["groupLabels"]}
        for r in stack.receiver_records()
        for a in r["payload"]["alerts"]
        if a["labels"]["alertname"] == alertname
    ]


def test_a_backlog_on_one_broker_is_one_alert_naming_it_and_none_for_the_other(stack: LocalStack) -> None:
    fired = wait_until(lambda: notified(stack, "CeleryQueueBacklog"), 60, "the backlog alert at the receiver")
    # The quiet queue was there as long: give its alert as long again (`for:` + group_wait).
    time.sleep(6)
    backlog = notified(stack, "CeleryQueueBacklog")
    assert {(a["labels"].get("broker"), a["labels"]["queue_name"], a["status"]) for a in backlog} == {
        (BUSY, "default", "firing")
    }, backlog
    fired = backlog[0]
    assert fired["group"].get("broker") == BUSY
    assert fired["annotations"]["description"].startswith(f"Queue default on broker {BUSY} holds 1.001k tasks")
    assert fired["annotations"]["dashboard_url"].endswith(f"?var-queue_name=default&var-broker={BUSY}")
    assert not [
        a
        for a in stack.prometheus_alerts()
        if a["labels"].get("broker") == QUIET and "Backlog" in a["labels"]["alertname"]
    ]
    # Both default queues have tasks and no consumer: one alert each, in a notification of its own.
    no_consumers = wait_until(
        lambda: (
            len({a["group"].get("broker") for a in notified(stack, "CeleryQueueNoConsumers")}) == 2
            and notified(stack, "CeleryQueueNoConsumers")
        ),
        30,
        "CeleryQueueNoConsumers for each broker",
    )
    assert all(a["group"].get("broker") == a["labels"]["broker"] for a in no_consumers), no_consumers


def test_the_recording_rule_keeps_the_two_default_queues_apart(stack: LocalStack) -> None:
    query = 'queue_name:celery_queue_length:sum{queue_name="default"}'
    wait_until(lambda: len(stack.query(query)) == 2, 20, "both brokers' default queue recorded")
    assert {r["metric"]["broker"]: float(r["value"][1]) for r in stack.query(query)} == {BUSY: 1001, QUIET: 5}


def _series(url: str, values: dict[str, str] | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    for q in iter_queries(values=values):
        for series in run_query(url, q.expr):
            yield q, series


def test_every_dashboard_query_keeps_brokers_apart_and_the_broker_variable_narrows_them(stack: LocalStack) -> None:
    url = stack.url("prometheus")
    merged = [
        f"{q.where()}: {s['metric']}"
        for q, s in _series(url)
        if q.kind != "variable"  # a variable lists values, whichever broker has them
        and any(label in s["metric"] for label in PER_BROKER_LABELS)
        and "broker" not in s["metric"]
    ]
    assert not merged, "series about a queue, worker or task without their broker:\n" + "\n".join(merged)

    variables = {q.dashboard_uid: q for q in iter_queries() if q.kind == "variable" and q.label == "broker"}
    assert set(variables) == {"celery-overview", "celery-queues", "celery-workers"}, "a $broker on every dashboard"
    for q in variables.values():
        assert {s["metric"]["broker"] for s in run_query(url, q.expr)} == {BUSY, QUIET}, q.where()

    def backlogs(values: dict[str, str] | None = None) -> dict[str, dict[tuple[str, str], float]]:
        out: dict[str, dict[tuple[str, str], float]] = {}
        for q, s in _series(url, values):
            if (
                q.kind == "panel"
                and q.panel_title in ("Backlog per queue", "Backlog now")
                and s["metric"].get("queue_name") == "default"
            ):
                out.setdefault(f"{q.dashboard_uid} / {q.panel_title}", {})[
                    s["metric"]["broker"], s["metric"]["queue_name"]
                ] = float(s["value"][1])
        return out

    everything = backlogs()
    assert len(everything) == 3, everything  # the overview's bars, the queues' graph and bars
    for panel, found in everything.items():
        assert found == {(BUSY, "default"): 1001, (QUIET, "default"): 5}, panel
    for panel, found in backlogs({"broker": QUIET}).items():
        assert found == {(QUIET, "default"): 5}, panel
