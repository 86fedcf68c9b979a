"""Celery / Queues: per queue, how much waits, at which priority, since when, who consumes it,
is it filling or draining, and when will it be empty."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from grafana.alerting_layer import (
    BACKLOG,
    BACKLOG_ALERT_THRESHOLD,
    LATENCY,
    OLDEST_WAIT_CRIT_S,
    RATE_WINDOW,
    UNACKED_ALERT_THRESHOLD_S,
    VISIBILITY_TIMEOUT_S,
    Rec,
)
from grafana.frame import dashboard
from grafana.ids import QUEUES_UID
from grafana.panels import bargauge_panel, consumers_graph, target, timeseries_panel
from grafana.style import BACKLOG_WARN, OLDEST_WAIT_WARN_S, Color, Unit, backlog_colors, fraction, thresholds
from grafana.variables import BROKER, QUEUE_VARIABLE, on_broker
from prometheus.generate import promql

UID = QUEUES_UID
TITLE = "Celery / Queues"
VARIABLES = (QUEUE_VARIABLE,)

_T = BACKLOG_ALERT_THRESHOLD
# Window of the time-to-drain slope: long enough to smooth prefetch bursts.
DRAIN_WINDOW = "10m"
_QUEUES = f'{BROKER}, queue_name=~"$queue_name"'
_LENGTH = f"{Rec.QUEUE_LENGTH}{{{_QUEUES}}}"
_QUEUE = on_broker("{{queue_name}}")  # the legend of a per-queue series: "default (payments)"


class Q:
    """Every PromQL expression of this dashboard: recording rules of the alerting layer
    (grafana.alerting_layer.Rec) where one holds what a panel shows, raw metrics otherwise.

    Flower's task events carry no queue label, so publish/consume rates exist only for all
    queues together; per queue, the slope of the backlog (deriv) is the net in - out.
    Rates are the recording rule's (over rate_window), so the backlog's growth added to them is
    taken over the same window.
    """

    BACKLOG = _LENGTH
    BACKLOG_NOW = BACKLOG
    BY_PRIORITY = f"sum by (broker, queue_name, priority) (celery_queue_priority_length{{{_QUEUES}}})"
    UNACKED = f"sum by (broker, queue_name) (celery_queue_unacked{{{_QUEUES}}})"
    OLDEST_AGE = f"max by (broker, queue_name) (celery_queue_oldest_message_age_seconds{{{_QUEUES}}})"
    UNACKED_OLDEST_AGE = f"max by (broker, queue_name) (celery_queue_unacked_oldest_age_seconds{{{_QUEUES}}})"
    CONSUMERS = f"min by (broker, queue_name) (celery_queue_consumers{{{_QUEUES}}})"
    CONSUMED = f'sum({Rec.EVENTS_RATE}{{type="task-received", {BROKER}}})'
    # What went in = what came out + what stayed (the backlog's growth).
    PUBLISHED_DERIVED = (
        f'clamp_min(sum({Rec.EVENTS_RATE}{{type="task-received", {BROKER}}})'
        f" + sum(deriv({Rec.QUEUE_LENGTH}{{{BROKER}}}[{RATE_WINDOW}])), 0)"
    )
    PUBLISHED_EVENTS = f'sum({Rec.EVENTS_RATE}{{type="task-sent", {BROKER}}})'
    NET_GROWTH = f"deriv({_LENGTH}[$__rate_interval])"
    # Backlog / how fast it shrinks; only queues that shrink have an estimate.
    TIME_TO_DRAIN = f"{_LENGTH} / (-deriv({_LENGTH}[{DRAIN_WINDOW}]) > 0)"


def _own_lines(listing: str) -> str:
    return (
        f" Queues with their own threshold in prometheus/alerting.yml get their own line ({listing})."
        if listing
        else ""
    )


def build() -> Dashboard:
    backlog_line, backlog_lines = BACKLOG.steps(lambda t: thresholds(Color.NONE, (t, Color.BAD)))
    backlog_bar, backlog_bars = BACKLOG.steps(backlog_colors)
    wait_line, wait_lines = LATENCY.steps(
        lambda t: thresholds(Color.NONE, (fraction(t, 5), Color.WARN), (t, Color.BAD))
    )
    if UNACKED_ALERT_THRESHOLD_S is None:
        unacked_line = (
            f"at the visibility timeout (dashed at kombu's default, {VISIBILITY_TIMEOUT_S} s; "
            "CeleryUnackedStuck compares with the one the exporter reports) Redis hands it to another "
            "worker, so it runs twice."
        )
    else:
        unacked_line = (
            f"the dashed line is the CeleryUnackedStuck threshold ({promql.number(VISIBILITY_TIMEOUT_S)} s); "
            "past the visibility timeout Redis hands it to another worker, so it runs twice."
        )
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
                f"is the CeleryQueueBacklog threshold ({_T}, fires after {BACKLOG.for_} above)."
                + _own_lines(BACKLOG.listing()),
                [target(Q.BACKLOG, _QUEUE)],
                Unit.COUNT,
                width=16,
                threshold_steps=backlog_line,
                series_thresholds=backlog_lines,
            )
        )
        .with_panel(
            bargauge_panel(
                "Backlog now",
                f"How much waits in each queue right now? Orange from {BACKLOG_WARN}, red from {_T} "
                "(the CeleryQueueBacklog threshold)"
                + (
                    f"; queues with their own threshold from half of it and from it ({BACKLOG.listing()})."
                    if BACKLOG.overrides
                    else "."
                ),
                [target(Q.BACKLOG_NOW, _QUEUE, instant=True)],
                Unit.COUNT,
                backlog_bar,
                series_thresholds=backlog_bars,
            )
        )
        .with_panel(
            timeseries_panel(
                "Ready tasks per priority",
                "Is the backlog made of low-priority work? Ready tasks per queue and priority "
                "(Celery's Redis priority levels; 0 is the most urgent).",
                [target(Q.BY_PRIORITY, _QUEUE + " priority {{priority}}")],
                Unit.COUNT,
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Unacked per queue",
                "How many tasks did workers take but not yet acknowledge (prefetched or running)? "
                "High while the backlog is low means workers hoard tasks (prefetch).",
                [target(Q.UNACKED, _QUEUE)],
                Unit.COUNT,
            )
        )
        .with_row(Row("Since when?"))
        .with_panel(
            timeseries_panel(
                "Oldest waiting message age",
                "Since when does the oldest ready task of each queue wait? Rising steadily means "
                f"nothing consumes that queue. Dashed: orange from {promql.number(OLDEST_WAIT_WARN_S)} s, "
                f"red from {promql.number(OLDEST_WAIT_CRIT_S)} s, the CeleryQueueLatencyHigh threshold (fires "
                f"after {LATENCY.for_} above)." + _own_lines(LATENCY.listing(" s")),
                [target(Q.OLDEST_AGE, _QUEUE)],
                Unit.SECONDS,
                threshold_steps=wait_line,
                series_thresholds=wait_lines,
            )
        )
        .with_panel(
            timeseries_panel(
                "Oldest unacked message age",
                "Is a delivered task stuck? Age of the oldest unacknowledged message per queue; " + unacked_line,
                [target(Q.UNACKED_OLDEST_AGE, _QUEUE)],
                Unit.SECONDS,
                threshold_steps=thresholds(Color.NONE, (VISIBILITY_TIMEOUT_S, Color.BAD)),
            )
        )
        .with_row(Row("Flow: who consumes, and is it keeping up?"))
        .with_panel(
            consumers_graph(
                "Consumers per queue",
                "Is anyone consuming each queue? Workers that answered the exporter's periodic "
                "`inspect active_queues` (a killed worker drops out here while Flower still shows it "
                "online); below the dashed line nobody consumes.",
                Q.CONSUMERS,
            )
        )
        .with_panel(
            timeseries_panel(
                "Published vs consumed (all queues)",
                "Do workers keep up with producers? Consumed = task-received events; published = "
                "consumed + backlog growth; 'published (task-sent)' appears only if producers send "
                f"task-sent events. Averaged over {RATE_WINDOW} (the alerting layer's recording rule). "
                "Flower's events carry no queue, so this is all queues.",
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
                [target(Q.NET_GROWTH, _QUEUE)],
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
                [target(Q.TIME_TO_DRAIN, _QUEUE, instant=True)],
                Unit.SECONDS,
                thresholds(Color.OK, (OLDEST_WAIT_CRIT_S, Color.WARN), (VISIBILITY_TIMEOUT_S, Color.BAD)),
                width=24,
                height=6,
                no_value="No queue is draining",
            )
        )
    )
