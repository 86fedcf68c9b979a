"""Celery / Queues: per queue, how much waits, at which priority, since when, who consumes it,
is it filling or draining, and when will it be empty."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from grafana.common import (
    BACKLOG_ALERT_THRESHOLD,
    BACKLOG_WARN,
    OLDEST_WAIT_CRIT_S,
    OLDEST_WAIT_WARN_S,
    QUEUE_VARIABLE,
    QUEUES_UID,
    VISIBILITY_TIMEOUT_S,
    Color,
    EmptyWhen,
    Unit,
    bargauge_panel,
    dashboard,
    target,
    thresholds,
    timeseries_panel,
)

UID = QUEUES_UID
TITLE = "Celery / Queues"
VARIABLES = (QUEUE_VARIABLE,)

_T = BACKLOG_ALERT_THRESHOLD
# Window of the time-to-drain slope: long enough to smooth prefetch bursts.
DRAIN_WINDOW = "10m"


class Q:
    """Every PromQL expression of this dashboard, so recording rules replace them here.

    Flower's task events carry no queue label, so publish/consume rates exist only for all
    queues together; per queue, the slope of the backlog (deriv) is the net in - out.
    """

    BACKLOG = 'sum by (queue_name) (celery_queue_length{queue_name=~"$queue_name"})'
    BACKLOG_NOW = BACKLOG
    BY_PRIORITY = 'sum by (queue_name, priority) (celery_queue_priority_length{queue_name=~"$queue_name"})'
    UNACKED = 'sum by (queue_name) (celery_queue_unacked{queue_name=~"$queue_name"})'
    OLDEST_AGE = 'max by (queue_name) (celery_queue_oldest_message_age_seconds{queue_name=~"$queue_name"})'
    UNACKED_OLDEST_AGE = 'max by (queue_name) (celery_queue_unacked_oldest_age_seconds{queue_name=~"$queue_name"})'
    CONSUMERS = 'min by (queue_name) (celery_queue_consumers{queue_name=~"$queue_name"})'
    CONSUMED = 'sum(rate(flower_events_total{type="task-received"}[$__rate_interval]))'
    # What went in = what came out + what stayed (the backlog's growth).
    PUBLISHED_DERIVED = (
        'clamp_min(sum(rate(flower_events_total{type="task-received"}[$__rate_interval]))'
        " + sum(deriv(celery_queue_length[$__rate_interval])), 0)"
    )
    PUBLISHED_EVENTS = 'sum(rate(flower_events_total{type="task-sent"}[$__rate_interval]))'
    NET_GROWTH = 'sum by (queue_name) (deriv(celery_queue_length{queue_name=~"$queue_name"}[$__rate_interval]))'
    # Backlog / how fast it shrinks; only queues that shrink have an estimate.
    TIME_TO_DRAIN = (
        'max by (queue_name) (celery_queue_length{queue_name=~"$queue_name"})'
        f' / (-sum by (queue_name) (deriv(celery_queue_length{{queue_name=~"$queue_name"}}[{DRAIN_WINDOW}])) > 0)'
    )


EMPTY_OK: dict[tuple[str, str | None], EmptyWhen] = {
    ("Published vs consumed (all queues)", "C"): EmptyWhen.NO_TASK_SENT_EVENTS,
    ("Time to drain", None): EmptyWhen.NOT_DRAINING,
}


def build() -> Dashboard:
    backlog_colors = thresholds(Color.OK, (BACKLOG_WARN, Color.WARN), (_T, Color.BAD))
    return (
        dashboard(
            UID,
            TITLE,
            "Per queue: how much waits, at which priority, since when, who consumes it, and whether it drains.",
            VARIABLES,
        )
        .with_row(Row("Backlog"))
        .with_panel(
            timeseries_panel(
                "Backlog per queue",
                f"Which queue piles up, and since when? Ready tasks per queue; the dashed red line "
                f"is the CeleryQueueBacklog threshold ({_T}, fires after 5 minutes above).",
                [target(Q.BACKLOG, "{{queue_name}}")],
                Unit.COUNT,
                width=16,
                threshold_steps=thresholds(Color.NONE, (_T, Color.BAD)),
            )
        )
        .with_panel(
            bargauge_panel(
                "Backlog now",
                f"How much waits in each queue right now? Orange from {BACKLOG_WARN}, red from {_T}.",
                [target(Q.BACKLOG_NOW, "{{queue_name}}", instant=True)],
                Unit.COUNT,
                backlog_colors,
            )
        )
        .with_panel(
            timeseries_panel(
                "Ready tasks per priority",
                "Is the backlog made of low-priority work? Ready tasks per queue and priority "
                "(Celery's Redis priority levels; 0 is the most urgent).",
                [target(Q.BY_PRIORITY, "{{queue_name}} priority {{priority}}")],
                Unit.COUNT,
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Unacked per queue",
                "How many tasks did workers take but not yet acknowledge (prefetched or running)? "
                "High while the backlog is low means workers hoard tasks (prefetch).",
                [target(Q.UNACKED, "{{queue_name}}")],
                Unit.COUNT,
            )
        )
        .with_row(Row("Since when?"))
        .with_panel(
            timeseries_panel(
                "Oldest waiting message age",
                "Since when does the oldest ready task of each queue wait? Rising steadily means "
                "nothing consumes that queue.",
                [target(Q.OLDEST_AGE, "{{queue_name}}")],
                Unit.SECONDS,
                threshold_steps=thresholds(
                    Color.NONE, (OLDEST_WAIT_WARN_S, Color.WARN), (OLDEST_WAIT_CRIT_S, Color.BAD)
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Oldest unacked message age",
                "Is a delivered task stuck? Age of the oldest unacknowledged message per queue; at "
                f"the visibility timeout (dashed, {VISIBILITY_TIMEOUT_S} s by default) Redis hands "
                "it to another worker, so it runs twice.",
                [target(Q.UNACKED_OLDEST_AGE, "{{queue_name}}")],
                Unit.SECONDS,
                threshold_steps=thresholds(Color.NONE, (VISIBILITY_TIMEOUT_S, Color.BAD)),
            )
        )
        .with_row(Row("Flow: who consumes, and is it keeping up?"))
        .with_panel(
            timeseries_panel(
                "Consumers per queue",
                "Is anyone consuming each queue? Workers that answered the exporter's periodic "
                "`inspect active_queues` (a killed worker drops out here while Flower still shows it "
                "online); below the dashed line nobody consumes.",
                [target(Q.CONSUMERS, "{{queue_name}}")],
                Unit.COUNT,
                width=8,
                threshold_steps=thresholds(Color.NONE, (1, Color.BAD)),
            )
        )
        .with_panel(
            timeseries_panel(
                "Published vs consumed (all queues)",
                "Do workers keep up with producers? Consumed = task-received events; published = "
                "consumed + backlog growth; 'published (task-sent)' appears only if producers send "
                "task-sent events. Flower's events carry no queue, so this is all queues.",
                [
                    target(Q.CONSUMED, "consumed (task-received)"),
                    target(Q.PUBLISHED_DERIVED, "published (consumed + growth)"),
                    target(Q.PUBLISHED_EVENTS, "published (task-sent)"),
                ],
                Unit.TASKS_PER_S,
                width=8,
                colors={"consumed (task-received)": Color.OK, "published (consumed + growth)": Color.INFO},
            )
        )
        .with_panel(
            timeseries_panel(
                "Net growth per queue",
                "Which queue fills up and which drains? Slope of each backlog: above 0 tasks arrive "
                "faster than they leave, below 0 the queue drains.",
                [target(Q.NET_GROWTH, "{{queue_name}}")],
                Unit.TASKS_PER_S,
                width=8,
                min_value=None,
                threshold_steps=thresholds(Color.NONE, (0, Color.MUTED)),
            )
        )
        .with_row(Row("When will it be empty?"))
        .with_panel(
            bargauge_panel(
                "Time to drain",
                f"When will each queue be empty at the pace of the last {DRAIN_WINDOW}? Backlog "
                "divided by how fast it shrinks; a queue that is not shrinking has no estimate "
                "(it will not drain without more consumers).",
                [target(Q.TIME_TO_DRAIN, "{{queue_name}}", instant=True)],
                Unit.SECONDS,
                thresholds(Color.OK, (OLDEST_WAIT_CRIT_S, Color.WARN), (VISIBILITY_TIMEOUT_S, Color.BAD)),
                width=24,
                height=6,
                no_value="No queue is draining",
            )
        )
    )
