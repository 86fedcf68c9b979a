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
from grafana.panels import (
    bargauge_panel,
    count_stat,
    link_to_queue,
    organize,
    stat_panel,
    table_panel,
    target,
    timeseries_panel,
    up_down_stat,
)
from grafana.style import (
    EXPORTER_SCRAPE_SLOW_S,
    FAILURE_RATIO_WARN,
    OLDEST_WAIT_WARN_S,
    Color,
    Unit,
    any_is_bad,
    backlog_colors,
    nan_text,
    none_is_bad,
    thresholds,
)
from grafana.variables import BROKER, BROKER_OR_NONE, QUEUE_VARIABLE, on_broker
from prometheus.generate import promql

UID = OVERVIEW_UID
TITLE = "Celery / Overview"
VARIABLES = (QUEUE_VARIABLE,)

OUTCOMES = "task-succeeded|task-failed|task-retried|task-rejected|task-revoked"
SCRAPE_JOBS = "celery-queue-exporter|flower|prometheus|alertmanager"
_T = BACKLOG_ALERT_THRESHOLD
_QUEUES = f'{BROKER}, queue_name=~"$queue_name"'
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
    OLDEST_WAITING = f"max(celery_queue_oldest_message_age_seconds{{{_QUEUES}}})"
    WORKERS_ONLINE = f'count(flower_worker_online{{{BROKER}}} == 1) or (max(up{{job="flower", {BROKER}}}) * 0)'
    QUEUES_WITHOUT_CONSUMERS = (
        f"count(celery_queue_consumers{{{_QUEUES}}} == 0) or (sum(celery_queue_consumers{{{_QUEUES}}}) * 0)"
    )
    FIRING_ALERTS_COUNT = f'count(ALERTS{{alertstate="firing", {BROKER}}}) or vector(0)'
    BACKLOG_BY_QUEUE = f"sum by (broker, queue_name) ({_LENGTH})"
    # The task rules aggregate worker away (task-sent events carry the producer's hostname).
    TASK_RATE_BY_OUTCOME = f'sum by (type) ({Rec.EVENTS_RATE}{{type=~"{OUTCOMES}", {BROKER}}})'
    FAILURE_RATIO = (
        f'(sum({Rec.EVENTS_RATE}{{type="task-failed", {BROKER}}}) or vector(0))'
        f" / sum({Rec.EVENTS_RATE}{{{_DONE}, {BROKER}}})"
    )
    # ALERTS_FOR_STATE holds when each active alert became active (Unix seconds).
    FIRING_ALERTS = (
        f'(ALERTS_FOR_STATE{{{BROKER}}} and ignoring(alertstate) ALERTS{{alertstate="firing", {BROKER}}}) * 1000'
    )
    TARGETS_UP = f'min by (job, broker) (up{{job=~"{SCRAPE_JOBS}", {BROKER_OR_NONE}}})'
    BROKER_UP = f"min by (broker) (celery_broker_up{{{BROKER}}})"
    EXPORTER_VERSION = f"max by (version) (celery_exporter_build_info{{{BROKER}}})"
    EXPORTER_SCRAPE_DURATION = f"max(celery_exporter_scrape_duration_seconds{{{BROKER}}})"
    PROMETHEUS_SCRAPE_DURATION = f'max(scrape_duration_seconds{{job="celery-queue-exporter", {BROKER}}})'
    # What the exporter knows it cannot see (each has its own alert, CeleryExporter...).
    QUEUES_NOT_REPORTED = f"sum(celery_exporter_queues_dropped{{{BROKER}}})"
    CONSUMERS_READING_AGE = f"time() - max by (broker, instance) (celery_queue_consumers_timestamp_seconds{{{BROKER}}})"
    SCRAPE_ERRORS_BY_REASON = (
        f"sum by (broker, reason) (rate(celery_exporter_scrape_errors_total{{{BROKER}}}[{RATE_WINDOW}]))"
    )
    UNACKED_UNATTRIBUTED = f"sum(celery_exporter_unacked_unattributed{{{BROKER}}})"


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
            count_stat(
                "Queues over threshold",
                f"How many queues hold more than {_T} ready tasks, the CeleryQueueBacklog alert's "
                f"threshold (the alert fires after {BACKLOG.for_} above it)?"
                + (
                    " Queues with their own threshold in prometheus/alerting.yml count against it, as in "
                    f"the alert ({BACKLOG.listing()})."
                    if BACKLOG.overrides
                    else ""
                ),
                Q.QUEUES_OVER_THRESHOLD,
                "queues",
                any_is_bad(),
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
            count_stat(
                "Workers online",
                "Are there workers at all? Workers whose last worker event told Flower they are online. "
                "A SIGKILLed worker stays 'online' here: check 'Queues without consumers'.",
                Q.WORKERS_ONLINE,
                "workers",
                none_is_bad(),
            )
        )
        .with_panel(
            count_stat(
                "Queues without consumers",
                "Does every queue have someone consuming it? Queues no worker consumes, from the "
                "exporter's periodic `inspect active_queues`: a killed worker stops answering, "
                "whatever Flower believes.",
                Q.QUEUES_WITHOUT_CONSUMERS,
                "queues",
                any_is_bad(),
            )
        )
        .with_panel(
            count_stat(
                "Alerts firing",
                "Is Prometheus alerting right now? Count of firing alerts (ALERTS); the table below lists them.",
                Q.FIRING_ALERTS_COUNT,
                "alerts",
                any_is_bad(),
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
                [target(Q.BACKLOG_BY_QUEUE, on_broker("{{queue_name}}"), instant=True)],
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
                        order=["alertname", "severity", "broker", "queue_name", "Value"],
                        rename={"Value": "Active since"},
                    )
                ],
                units={"Active since": Unit.TIME_AGO},
                no_value="No alert is firing",
            )
        )
        .with_row(Row("Can we trust these numbers?"))
        .with_panel(
            up_down_stat(
                "Scrape targets",
                "Is each part of the monitoring reachable? Prometheus' `up` per scrape job: the "
                "queue exporter, Flower, Prometheus itself and Alertmanager.",
                Q.TARGETS_UP,
                "{{job}} {{broker}}",
                width=6,
                text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
            )
        )
        .with_panel(
            up_down_stat(
                "Broker up",
                "Can the exporter reach the broker (Redis or RabbitMQ)? When DOWN, every queue number above is stale.",
                Q.BROKER_UP,
                "{{broker}}",
                width=3,
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
            count_stat(
                "Queues not reported",
                "Does the exporter report every queue? Queues it found beyond its --max-queues and "
                "does not report: their backlog shows on no panel and no queue alert sees it "
                "(CeleryExporterQueuesDropped). Raise --max-queues, or find what creates so many queues.",
                Q.QUEUES_NOT_REPORTED,
                "queues",
                any_is_bad(),
                width=6,
                height=6,
            )
        )
        .with_panel(
            timeseries_panel(
                "Consumers reading age",
                "How old is what the exporter knows of the consumers? Seconds since its last successful "
                "`inspect active_queues`, which 'Queues without consumers', CeleryQueueNoConsumers and "
                "CeleryWorkerDown rely on. It climbs to the exporter's --consumers-interval and falls "
                "back at each reading; climbing on means no reading succeeds (workers do not answer, or "
                "the broker refuses the inspect, e.g. an ACL): CeleryExporterConsumersStale. Empty when "
                "the reading is disabled (--consumers-interval 0).",
                [target(Q.CONSUMERS_READING_AGE, on_broker("{{instance}}"))],
                Unit.SECONDS,
                width=12,
                height=7,
            )
        )
        .with_panel(
            timeseries_panel(
                "Exporter scrape errors",
                "Does the exporter fail to read the broker, or read things it cannot use? Errors per "
                f"second by reason over {RATE_WINDOW}: `redis` (unreachable, timeout, refused), "
                "`wrong_type` (a queue key that is not a list: its workers fail on it too), "
                "`malformed_message`, `malformed_unacked`; on the right axis, unacked entries whose "
                "queue cannot be told. Any of them means gaps or wrong values in the queue panels "
                "(CeleryExporterScrapeErrors).",
                [
                    target(Q.SCRAPE_ERRORS_BY_REASON, on_broker("{{reason}}")),
                    target(Q.UNACKED_UNATTRIBUTED, "unacked without a queue"),
                ],
                Unit.ERRORS_PER_S,
                width=12,
                height=7,
                right_axis={"unacked without a queue": Unit.COUNT},
            )
        )
    )
