"""Every panel of every dashboard shows data from the real stack under a mixed load.

Real redis-server, Celery worker, Flower, exporter, Prometheus, Alertmanager and receiver
(native/child_stack.py); the load has successes, retries, failures, a backlog on a queue no
worker consumes, priorities and ETA tasks. Then each dashboard query runs against that
Prometheus with Grafana's variables substituted, as Grafana would run it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.grafana.queries import EmptyWhen, check_live, iter_queries, run_query
from tests.support.procs import wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, float]]:
    stack = LocalStack(tmp_path_factory.mktemp("stack"), extra_env={"CELERY_RETRY_COUNTDOWN": "1"})
    with stack.running():
        started = time.time()
        load = [
            ["--task", "add", "--count", "30"],
            ["--task", "failing", "--count", "3"],
            ["--task", "sqrt", "--count", "5"],
            ["--task", "add", "--count", "5", "--countdown", "600"],  # ETA: held unacked by the worker
            ["--queue", "nobody_home", "--count", "1200"],  # backlog: no consumer
            ["--queue", "nobody_home", "--count", "20", "--priority", "5"],
            ["--queue", "nobody_home", "--count", "20", "--priority", "9"],
        ]
        for args in load:
            stack.publish(*args)
        failed = 'sum(flower_events_total{type="task-failed"})'
        wait_until(
            lambda: stack.query(failed) and float(stack.query(failed)[0]["value"][1]) >= 3,
            60,
            "the failing tasks to exhaust their retries",
        )
        wait_until(
            lambda: stack.query('ALERTS{alertname="CeleryQueueBacklog",alertstate="firing"}'),
            60,
            "the backlog alert to fire",
        )
        time.sleep(5)  # a few more scrapes, so rate() windows hold several samples
        yield stack, started


def test_every_panel_query_returns_data(loaded_stack: tuple[LocalStack, float]) -> None:
    stack, started = loaded_stack
    # The load failed and retried tasks and fired the backlog alert: those panels must show data too.
    expected = {EmptyWhen.NO_FAILURE, EmptyWhen.NO_RETRY, EmptyWhen.NO_ALERT}
    problems = check_live(stack.url("prometheus"), start=started, end=time.time(), expect_also=expected)
    assert not problems, "\n".join(problems)


EXPECTED_VALUES = {
    "queue_name": {"default", "nobody_home", "periodic_tasks"},
    "worker": {"e2e-worker@"},  # + hostname
    "task": {"workers.tasks.add", "workers.tasks.failing_task"},
}


def test_template_variables_list_what_the_stack_runs(loaded_stack: tuple[LocalStack, float]) -> None:
    stack, _ = loaded_stack
    variables = [q for q in iter_queries() if q.kind == "variable" and q.label in EXPECTED_VALUES]
    assert {q.label for q in variables} == set(EXPECTED_VALUES)
    for q in variables:
        values = {r["metric"][q.label] for r in run_query(stack.url("prometheus"), q.expr)}
        for want in EXPECTED_VALUES[q.label]:
            assert any(v.startswith(want) for v in values), f"{q.where()}: {want} not in {sorted(values)}"
