"""Celery / Workers and tasks: are the workers alive and busy, and which tasks are slow,
wait at the worker, retry or fail."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import dashboard as dm

from grafana.common import (
    ONLINE_OFFLINE,
    TASK_VARIABLE,
    WORKER_VARIABLE,
    WORKERS_UID,
    Color,
    EmptyWhen,
    Unit,
    dashboard,
    organize,
    state_panel,
    table_panel,
    target,
    thresholds,
    timeseries_panel,
)

UID = WORKERS_UID
TITLE = "Celery / Workers and tasks"
VARIABLES = (WORKER_VARIABLE, TASK_VARIABLE)

OUTCOMES = "task-succeeded|task-failed|task-retried|task-rejected|task-revoked"
_SEL = 'worker=~"$worker", task=~"$task"'


def _runtime_quantile(q: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (task, le) "
        f"(rate(flower_task_runtime_seconds_bucket{{{_SEL}}}[$__rate_interval])))"
    )


class Q:
    """Every PromQL expression of this dashboard, so recording rules replace them here."""

    ONLINE = 'max by (worker) (flower_worker_online{worker=~"$worker"})'
    BROKER_CONSUMERS = "min by (queue_name) (celery_queue_consumers)"
    EXECUTING = 'sum by (worker) (flower_worker_number_of_currently_executing_tasks{worker=~"$worker"})'
    PREFETCHED = f"sum by (worker) (flower_worker_prefetched_tasks{{{_SEL}}})"
    FINISHED = (
        f'sum by (worker) (rate(flower_events_total{{type=~"task-succeeded|task-failed", {_SEL}}}[$__rate_interval]))'
    )
    RUNTIME_P50 = _runtime_quantile("0.5")
    RUNTIME_P95 = _runtime_quantile("0.95")
    RUNTIME_P99 = _runtime_quantile("0.99")
    PREFETCH_WAIT = f"max by (task) (flower_task_prefetch_time_seconds{{{_SEL}}})"
    RETRIES = f'sum by (task) (rate(flower_events_total{{type="task-retried", {_SEL}}}[$__rate_interval]))'
    FAILURES = f'sum by (task) (rate(flower_events_total{{type="task-failed", {_SEL}}}[$__rate_interval]))'
    OUTCOMES_IN_RANGE = f'sum by (task, type) (increase(flower_events_total{{type=~"{OUTCOMES}", {_SEL}}}[$__range]))'


EMPTY_OK: dict[tuple[str, str | None], EmptyWhen] = {
    ("Retries by task", None): EmptyWhen.NO_RETRY,
    ("Failures by task", None): EmptyWhen.NO_FAILURE,
}


def build() -> Dashboard:
    return (
        dashboard(
            UID,
            TITLE,
            "Are the workers alive and busy, and which tasks are slow, wait at the worker, retry or fail?",
            VARIABLES,
        )
        .with_row(Row("Workers"))
        .with_panel(
            state_panel(
                "Worker online (Flower)",
                "Which workers does Flower consider online? From worker heartbeats; a SIGKILLed "
                "worker sends no offline event and stays green until Flower purges it, so compare "
                "with the live consumers on the right.",
                [target(Q.ONLINE, "{{worker}}")],
                ONLINE_OFFLINE,
                height=7,
            )
        )
        .with_panel(
            timeseries_panel(
                "Consumers per queue (live workers)",
                "Who really listens on each queue? Workers that answered the exporter's periodic "
                "`inspect active_queues`, all queues; a worker that died without saying so "
                "disappears here, not on the left.",
                [target(Q.BROKER_CONSUMERS, "{{queue_name}}")],
                Unit.COUNT,
                height=7,
                threshold_steps=thresholds(Color.NONE, (1, Color.BAD)),
            )
        )
        .with_panel(
            timeseries_panel(
                "Executing tasks per worker",
                "How busy is each worker? Tasks running right now, from the worker's heartbeat "
                "(compare with its concurrency).",
                [target(Q.EXECUTING, "{{worker}}")],
                Unit.COUNT,
                width=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Prefetched tasks per worker",
                "How many tasks wait inside each worker (received, not started)? These are no "
                "longer in the queue, so another idle worker cannot take them.",
                [target(Q.PREFETCHED, "{{worker}}")],
                Unit.COUNT,
                width=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tasks finished per worker",
                "Which workers do the work? Succeeded and failed tasks per second per worker.",
                [target(Q.FINISHED, "{{worker}}")],
                Unit.TASKS_PER_S,
                width=8,
            )
        )
        .with_row(Row("Tasks"))
        .with_panel(
            timeseries_panel(
                "Task runtime p50 / p95 / p99",
                "Which tasks are slow, and is it every call or the tail? Runtime quantiles per task "
                "from Flower's histogram, over tasks finished in each interval.",
                [
                    target(Q.RUNTIME_P50, "{{task}} p50"),
                    target(Q.RUNTIME_P95, "{{task}} p95"),
                    target(Q.RUNTIME_P99, "{{task}} p99"),
                ],
                Unit.SECONDS,
            )
        )
        .with_panel(
            timeseries_panel(
                "Prefetch wait per task",
                "How long did the latest task wait inside a worker between being received and "
                "started? Non-zero for long means workers prefetch more than they can run.",
                [target(Q.PREFETCH_WAIT, "{{task}}")],
                Unit.SECONDS,
            )
        )
        .with_panel(
            timeseries_panel(
                "Retries by task",
                "Which tasks retry? task-retried events per second per task.",
                [target(Q.RETRIES, "{{task}}")],
                Unit.TASKS_PER_S,
                width=8,
                no_value="No retry",
            )
        )
        .with_panel(
            timeseries_panel(
                "Failures by task",
                "Which tasks fail? task-failed events per second per task.",
                [target(Q.FAILURES, "{{task}}")],
                Unit.TASKS_PER_S,
                width=8,
                no_value="No failure",
            )
        )
        .with_panel(
            table_panel(
                "Outcomes per task in the time range",
                "Which task fails or retries most, in numbers? Task events per task and outcome over "
                "the dashboard's time range.",
                [target(Q.OUTCOMES_IN_RANGE, "", instant=True, table_format=True)],
                width=8,
                height=8,
                unit=Unit.COUNT,
                decimals=0,
                transformations=[
                    dm.DataTransformerConfig(
                        id_val="groupingToMatrix",
                        options={"columnField": "type", "rowField": "task", "valueField": "Value"},
                    ),
                    organize(rename={"task\\type": "task"}),
                ],
            )
        )
    )
