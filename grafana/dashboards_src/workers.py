"""Celery / Workers and tasks: are the workers alive and busy, and which tasks are slow,
wait at the worker, retry or fail."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import dashboard as dm

from grafana.alerting_layer import RATE_WINDOW, Rec
from grafana.frame import dashboard
from grafana.ids import WORKERS_UID
from grafana.panels import consumers_graph, organize, state_panel, table_panel, target, timeseries_panel
from grafana.style import ONLINE_OFFLINE, UP_DOWN, Unit
from grafana.variables import BROKER, TASK_VARIABLE, WORKER_VARIABLE, on_broker

UID = WORKERS_UID
TITLE = "Celery / Workers and tasks"
VARIABLES = (WORKER_VARIABLE, TASK_VARIABLE)

OUTCOMES = "task-succeeded|task-failed|task-retried|task-rejected|task-revoked"
_WORKER = f'{BROKER}, worker=~"$worker"'
_SEL = f'{_WORKER}, task=~"$task"'
_TASK = f'{BROKER}, task=~"$task"'
# Legends: a worker or task name is unique only within its broker.
_W = on_broker("{{worker}}")
_T = on_broker("{{task}}")
# The task recording rules sum workers away: panels reading them follow $task, not $worker.
ALL_WORKERS = "all workers (the alerting layer's recording rules sum workers away: the Worker filter does not apply)"


class Q:
    """Every PromQL expression of this dashboard: recording rules of the alerting layer
    (grafana.alerting_layer.Rec) where one holds what a panel shows, raw metrics otherwise (per worker,
    or over the dashboard's time range)."""

    ONLINE = f"max by (broker, worker) (flower_worker_online{{{_WORKER}}})"
    # The exporter's inspect: 1 answered the latest one, 0 answered before and no longer does.
    UP = f"max by (broker, worker) (celery_worker_up{{{_WORKER}}})"
    BROKER_CONSUMERS = f"min by (broker, queue_name) (celery_queue_consumers{{{BROKER}}})"
    EXECUTING = f"sum by (broker, worker) (flower_worker_number_of_currently_executing_tasks{{{_WORKER}}})"
    PREFETCHED = f"sum by (broker, worker) (flower_worker_prefetched_tasks{{{_SEL}}})"
    FINISHED = (
        "sum by (broker, worker) "
        f'(rate(flower_events_total{{type=~"task-succeeded|task-failed", {_SEL}}}[$__rate_interval]))'
    )
    RUNTIME_P50 = f"{Rec.RUNTIME_P50}{{{_TASK}}}"
    RUNTIME_P90 = f"{Rec.RUNTIME_P90}{{{_TASK}}}"
    RUNTIME_P99 = f"{Rec.RUNTIME_P99}{{{_TASK}}}"
    PREFETCH_WAIT = f"max by (broker, task) (flower_task_prefetch_time_seconds{{{_SEL}}})"
    RETRIES = f'sum by (broker, task) ({Rec.EVENTS_RATE}{{type="task-retried", {_TASK}}})'
    FAILURES = f'sum by (broker, task) ({Rec.EVENTS_RATE}{{type="task-failed", {_TASK}}})'
    OUTCOMES_IN_RANGE = f'sum by (task, type) (increase(flower_events_total{{type=~"{OUTCOMES}", {_SEL}}}[$__range]))'


# Graphs with one line per worker: (title, the question it answers, query, unit).
PER_WORKER = (
    (
        "Executing tasks per worker",
        "How busy is each worker? Tasks running right now, from the worker's heartbeat (compare with its concurrency).",
        Q.EXECUTING,
        Unit.COUNT,
    ),
    (
        "Prefetched tasks per worker",
        "How many tasks wait inside each worker (received, not started)? These are no longer in the queue, "
        "so another idle worker cannot take them.",
        Q.PREFETCHED,
        Unit.COUNT,
    ),
    (
        "Tasks finished per worker",
        "Which workers do the work? Succeeded and failed tasks per second per worker.",
        Q.FINISHED,
        Unit.TASKS_PER_S,
    ),
)


def _events_by_task(title: str, question: str, event: str, expr: str, no_value: str) -> timeseries.Panel:
    """Events of one kind per second per task, from the recording rule (all workers)."""
    return timeseries_panel(
        title,
        f"{question} {event} events per second per task over {RATE_WINDOW}, {ALL_WORKERS}.",
        [target(expr, _T)],
        Unit.TASKS_PER_S,
        width=8,
        no_value=no_value,
    )


def build() -> Dashboard:
    board = (
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
                "Which workers does Flower consider online? From worker events: it learns at once of "
                "a new worker and of a clean shutdown (worker-offline), but a SIGKILLed or OOM-killed "
                "worker sends nothing and stays online here. 'Worker up (exporter)' next to it "
                "catches that.",
                [target(Q.ONLINE, _W)],
                ONLINE_OFFLINE,
            )
        )
        .with_panel(
            state_panel(
                "Worker up (exporter)",
                "Which workers still answer? UP when the worker answered the exporter's latest "
                "`inspect`, DOWN when a worker that answered before no longer does. Both panels "
                "because each misses what the other sees: Flower never notices a crash, the exporter "
                "cannot tell a crash from a clean shutdown. DOWN here and offline in Flower: shut down "
                "cleanly. DOWN here but online in Flower: crashed, killed or cut off from the broker "
                "(the CeleryWorkerDown alert).",
                [target(Q.UP, _W)],
                UP_DOWN,
            )
        )
        .with_panel(
            consumers_graph(
                "Consumers per queue (live workers)",
                "Who really listens on each queue? Workers that answered the exporter's periodic "
                "`inspect active_queues`, all queues; a worker that died without saying so "
                "disappears here, not in Flower's online state.",
                Q.BROKER_CONSUMERS,
                height=7,
            )
        )
    )
    for title, description, expr, unit in PER_WORKER:
        board = board.with_panel(timeseries_panel(title, description, [target(expr, _W)], unit, width=8))
    return (
        board.with_row(Row("Tasks"))
        .with_panel(
            timeseries_panel(
                "Task runtime p50 / p90 / p99",
                "Which tasks are slow, and is it every call or the tail? Runtime quantiles per task "
                f"from Flower's histogram, over tasks finished in the last {RATE_WINDOW}; {ALL_WORKERS}.",
                [
                    target(Q.RUNTIME_P50, _T + " p50"),
                    target(Q.RUNTIME_P90, _T + " p90"),
                    target(Q.RUNTIME_P99, _T + " p99"),
                ],
                Unit.SECONDS,
            )
        )
        .with_panel(
            timeseries_panel(
                "Prefetch wait per task",
                "How long did the latest task wait inside a worker between being received and "
                "started? Non-zero for long means workers prefetch more than they can run.",
                [target(Q.PREFETCH_WAIT, _T)],
                Unit.SECONDS,
            )
        )
        .with_panel(_events_by_task("Retries by task", "Which tasks retry?", "task-retried", Q.RETRIES, "No retry"))
        .with_panel(_events_by_task("Failures by task", "Which tasks fail?", "task-failed", Q.FAILURES, "No failure"))
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
