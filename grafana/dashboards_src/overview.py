"""Celery / Overview: is anything piling up, where, since when, why, and can we trust the numbers."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common as cm

from grafana.alerting_layer import (
    BACKLOG,
    BACKLOG_ALERT_THRESHOLD,
    FAILURE_RATIO_CRIT,
    LATENCY,
    OLDEST_WAIT_CRIT_S,
    RATE_WINDOW,
    Rec,
)
from grafana.frame import dashboard
from grafana.ids import OVERVIEW_UID
from grafana.panels import bargauge_panel, link_to_queue, organize, stat_panel, table_panel, target, timeseries_panel
from grafana.style import (
    EXPORTER_SCRAPE_SLOW_S,
    FAILURE_RATIO_WARN,
    OLDEST_WAIT_WARN_S,
    UP_DOWN,
    Color,
    Unit,
    backlog_colors,
    nan_text,
    thresholds,
)
from grafana.variables import QUEUE_VARIABLE
from prometheus.generate import promql

UID = OVERVIEW_UID
TITLE = "Celery / Overview"
VARIABLES = (QUEUE_VARIABLE,)

OUTCOMES = "task-succeeded|task-failed|task-retried|task-rejected|task-revoked"
SCRAPE_JOBS = "celery-queue-exporter|flower|prometheus|alertmanager"
_T = BACKLOG_ALERT_THRESHOLD
_QUEUES = 'queue_name=~"$queue_name"'
_LENGTH = f"{Rec.QUEUE_LENGTH}{{{_QUEUES}}}"
_DONE = 'type=~"task-succeeded|task-failed"'


class Q:
    """Every PromQL expression of this dashboard: recording rules of the alerting layer
    (grafana.alerting_layer.Rec) where one holds what a panel shows, raw metrics otherwise.

    `X or (sum(Y) * 0)` shows 0 rather than nothing when Y is there but nothing matches X
    (no queue over the threshold), yet still nothing when Y itself is missing (exporter down).
    """

    BACKLOG_TOTAL = f"sum({_LENGTH})"
    # The alert's own split: queues with their own threshold (overrides) are compared with it.
    QUEUES_OVER_THRESHOLD = f"count({BACKLOG.exceeded(Rec.QUEUE_LENGTH, [_QUEUES])}) or (sum({_LENGTH}) * 0)"
    OLDEST_WAITING = 'max(celery_queue_oldest_message_age_seconds{queue_name=~"$queue_name"})'
    WORKERS_ONLINE = 'count(flower_worker_online == 1) or (max(up{job="flower"}) * 0)'
    QUEUES_WITHOUT_CONSUMERS = (
        'count(celery_queue_consumers{queue_name=~"$queue_name"} == 0)'
        ' or (sum(celery_queue_consumers{queue_name=~"$queue_name"}) * 0)'
    )
    FIRING_ALERTS_COUNT = 'count(ALERTS{alertstate="firing"}) or vector(0)'
    BACKLOG_BY_QUEUE = f"sum by (queue_name) ({_LENGTH})"
    # The task rules aggregate worker away (task-sent events carry the producer's hostname).
    TASK_RATE_BY_OUTCOME = f'sum by (type) ({Rec.EVENTS_RATE}{{type=~"{OUTCOMES}"}})'
    FAILURE_RATIO = f'(sum({Rec.EVENTS_RATE}{{type="task-failed"}}) or vector(0)) / sum({Rec.EVENTS_RATE}{{{_DONE}}})'
    # ALERTS_FOR_STATE holds when each active alert became active (Unix seconds).
    FIRING_ALERTS = '(ALERTS_FOR_STATE and ignoring(alertstate) ALERTS{alertstate="firing"}) * 1000'
    TARGETS_UP = f'min by (job) (up{{job=~"{SCRAPE_JOBS}"}})'
    BROKER_UP = "min(celery_broker_up)"
    EXPORTER_VERSION = "max by (version) (celery_exporter_build_info)"
    EXPORTER_SCRAPE_DURATION = "max(celery_exporter_scrape_duration_seconds)"
    PROMETHEUS_SCRAPE_DURATION = 'max(scrape_duration_seconds{job="celery-queue-exporter"})'
    EXPORTER_SCRAPE_ERRORS = (
        "sum(increase(celery_exporter_scrape_errors_total[$__rate_interval]))"
        ' or (sum(up{job="celery-queue-exporter"}) * 0)'
    )


def build() -> Dashboard:
    backlog_default, backlog_by_queue = BACKLOG.steps(backlog_colors)
    return (
        dashboard(
            UID,
            TITLE,
            "Is anything piling up, where, since when, and why? Start here; the Queues and "
            "Workers dashboards drill down.",
            VARIABLES,
        )
        .with_row(Row("Is anything piling up?"))
        .with_panel(
            stat_panel(
                "Total backlog",
                "How many tasks wait in the broker right now? Ready tasks of the selected queues, "
                "summed over priorities (not yet delivered to any worker).",
                [target(Q.BACKLOG_TOTAL, "backlog")],
                Unit.COUNT,
                backlog_colors(_T),
            )
        )
        .with_panel(
            stat_panel(
                "Queues over threshold",
                f"How many queues hold more than {_T} ready tasks, the CeleryQueueBacklog alert's "
                f"threshold (the alert fires after {BACKLOG.for_} above it)?"
                + (
                    " Queues with their own threshold in prometheus/alerting.yml count against it, as in "
                    f"the alert ({BACKLOG.listing()})."
                    if BACKLOG.overrides
                    else ""
                ),
                [target(Q.QUEUES_OVER_THRESHOLD, "queues")],
                Unit.COUNT,
                thresholds(Color.OK, (1, Color.BAD)),
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Oldest waiting task",
                "Since when is something waiting? Age of the oldest ready message over the selected "
                "queues; high while the backlog is low means a queue nobody consumes. Red from "
                f"{promql.number(OLDEST_WAIT_CRIT_S)} s, the CeleryQueueLatencyHigh threshold"
                + (
                    f" (the oldest of all queues: one with its own threshold, {LATENCY.listing(' s')}, "
                    "can turn it red without an alert)"
                    if LATENCY.overrides
                    else ""
                )
                + ".",
                [target(Q.OLDEST_WAITING, "oldest")],
                Unit.SECONDS,
                thresholds(Color.OK, (OLDEST_WAIT_WARN_S, Color.WARN), (OLDEST_WAIT_CRIT_S, Color.BAD)),
            )
        )
        .with_panel(
            stat_panel(
                "Workers online",
                "Are there workers at all? Workers whose last worker event told Flower they are online. "
                "A SIGKILLed worker stays 'online' here: check 'Queues without consumers'.",
                [target(Q.WORKERS_ONLINE, "workers")],
                Unit.COUNT,
                thresholds(Color.BAD, (1, Color.OK)),
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Queues without consumers",
                "Does every queue have someone consuming it? Queues no worker consumes, from the "
                "exporter's periodic `inspect active_queues`: a killed worker stops answering, "
                "whatever Flower believes.",
                [target(Q.QUEUES_WITHOUT_CONSUMERS, "queues")],
                Unit.COUNT,
                thresholds(Color.OK, (1, Color.BAD)),
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Alerts firing",
                "Is Prometheus alerting right now? Count of firing alerts (ALERTS); the table below lists them.",
                [target(Q.FIRING_ALERTS_COUNT, "alerts")],
                Unit.COUNT,
                thresholds(Color.OK, (1, Color.BAD)),
                decimals=0,
            )
        )
        .with_row(Row("Where, and why?"))
        .with_panel(
            bargauge_panel(
                "Backlog per queue",
                f"Where is it piling up? Ready tasks per queue; red from {_T} (the alert threshold), "
                "orange from half of it"
                + (
                    f"; queues with their own threshold in prometheus/alerting.yml by theirs ({BACKLOG.listing()})"
                    if BACKLOG.overrides
                    else ""
                )
                + ". Click a bar to open that queue.",
                [target(Q.BACKLOG_BY_QUEUE, "{{queue_name}}", instant=True)],
                Unit.COUNT,
                backlog_default,
                links=link_to_queue(),
                series_thresholds=backlog_by_queue,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tasks per second by outcome",
                "Are tasks completing, or failing, retrying, being rejected or revoked? Celery task "
                f"events per second, all workers and tasks, averaged over {RATE_WINDOW} (the alerting "
                "layer's recording rule).",
                [target(Q.TASK_RATE_BY_OUTCOME, "{{type}}")],
                Unit.TASKS_PER_S,
                width=10,
                colors={
                    "task-succeeded": Color.OK,
                    "task-failed": Color.BAD,
                    "task-retried": Color.WARN,
                    "task-rejected": Color.EXTRA,
                    "task-revoked": Color.MUTED,
                },
            )
        )
        .with_panel(
            stat_panel(
                "Failure ratio",
                f"What share of finished tasks failed over the last {RATE_WINDOW}? task-failed / "
                "(task-succeeded + task-failed), all tasks; retries are not failures. Red from "
                f"{promql.percent(FAILURE_RATIO_CRIT)}, the CeleryTaskFailureRateHigh threshold (which "
                "applies per task), orange from half of it.",
                [target(Q.FAILURE_RATIO, "failed")],
                Unit.RATIO,
                thresholds(Color.OK, (FAILURE_RATIO_WARN, Color.WARN), (FAILURE_RATIO_CRIT, Color.BAD)),
                width=6,
                height=8,
                mappings=nan_text("no task finished"),
            )
        )
        .with_row(Row("Alerts"))
        .with_panel(
            table_panel(
                "Firing alerts",
                "Which alerts fire, on what, and since when? Firing Prometheus alerts with their "
                "labels; 'Active since' is when the condition started to hold.",
                [target(Q.FIRING_ALERTS, "", instant=True, table_format=True)],
                transformations=[
                    organize(
                        exclude=["Time", "__name__", "alertstate"],
                        order=["alertname", "severity", "queue_name", "Value"],
                        rename={"Value": "Active since"},
                    )
                ],
                units={"Active since": Unit.TIME_AGO},
                no_value="No alert is firing",
            )
        )
        .with_row(Row("Can we trust these numbers?"))
        .with_panel(
            stat_panel(
                "Scrape targets",
                "Is each part of the monitoring reachable? Prometheus' `up` per scrape job: the "
                "queue exporter, Flower, Prometheus itself and Alertmanager.",
                [target(Q.TARGETS_UP, "{{job}}")],
                Unit.STATE,
                thresholds(Color.BAD, (1, Color.OK)),
                width=6,
                height=6,
                mappings=UP_DOWN,
                sparkline=False,
                text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
            )
        )
        .with_panel(
            stat_panel(
                "Broker up",
                "Can the exporter reach Redis? When DOWN, every queue number above is stale.",
                [target(Q.BROKER_UP, "broker")],
                Unit.STATE,
                thresholds(Color.BAD, (1, Color.OK)),
                width=3,
                height=6,
                mappings=UP_DOWN,
                sparkline=False,
            )
        )
        .with_panel(
            stat_panel(
                "Exporter version",
                "Which celery-queue-exporter build is running (celery_exporter_build_info)?",
                [target(Q.EXPORTER_VERSION, "{{version}}")],
                Unit.STATE,
                thresholds(Color.INFO),
                width=3,
                height=6,
                sparkline=False,
                text_mode=cm.BigValueTextMode.NAME,
            )
        )
        .with_panel(
            timeseries_panel(
                "Exporter scrape duration",
                "Is the exporter getting slow? Time it spent reading the broker, and the whole "
                "scrape as Prometheus saw it; the dashed line is where it becomes worth a look.",
                [
                    target(Q.EXPORTER_SCRAPE_DURATION, "broker read (exporter)"),
                    target(Q.PROMETHEUS_SCRAPE_DURATION, "scrape (Prometheus)"),
                ],
                Unit.SECONDS,
                width=6,
                height=6,
                threshold_steps=thresholds(Color.NONE, (EXPORTER_SCRAPE_SLOW_S, Color.WARN)),
                legend_calcs=(),
            )
        )
        .with_panel(
            timeseries_panel(
                "Exporter scrape errors",
                "Does the exporter fail to read the broker? Errors per interval; any error means "
                "gaps or stale values in the queue panels.",
                [target(Q.EXPORTER_SCRAPE_ERRORS, "errors")],
                Unit.COUNT,
                width=6,
                height=6,
                threshold_steps=thresholds(Color.NONE, (1, Color.BAD)),
                legend_calcs=(),
            )
        )
    )
