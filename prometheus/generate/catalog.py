"""Every alert of the stack: its severity, scope, words, dashboard and PromQL, as functions of
the parameters in alerting.yml. Severities live here, not in the YAML: routing and inhibition in
alertmanager/alertmanager.yml rely on them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus.generate import promql as q

# Grafana dashboard uids, defined here only: grafana/ids.py reads them (the alerts link to them).
OVERVIEW = "celery-overview"
QUEUES = "celery-queues"
WORKERS = "celery-workers"


class Scope(StrEnum):
    """What one alert instance is about; overrides in alerting.yml are keyed by this label."""

    QUEUE = "queue_name"
    WORKER = "worker"
    TASK = "task"
    BEAT = "beat"  # one rule per periodic task listed in the alert's `tasks`
    GLOBAL = "global"


class Param(StrEnum):
    DURATION = "a duration like 30s, 5m, 1h"
    NUMBER = "a number >= 0"
    RATIO = "a ratio > 0 and <= 1"
    COUNT = "a whole number >= 1"
    SECONDS_OR_NULL = "a number of seconds > 0, or null"
    PERIODS = "a mapping of task name to its period (a duration), or to {period: a duration, brokers: [broker names]}"
    BOOL = "true or false"


@dataclass(frozen=True)
class RuleContext:
    """What one generated rule is built from."""

    params: Mapping[str, Any]  # this alert's parameters for this rule (overrides applied)
    matchers: tuple[str, ...]  # scope-label matchers selecting the series this rule covers
    settings: Mapping[str, Any]  # blind_hold, rate_window, jobs
    other: Callable[[str], Mapping[str, Any]]  # parameters of another alert, same overrides
    item: str = ""  # CeleryBeatMissing: the periodic task of this rule
    item_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    expr: str
    description: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertSpec:
    name: str
    severity: str
    scope: Scope
    group: str
    summary: str
    params: Mapping[str, Param]
    build: Callable[[RuleContext], Built]
    dashboard: str
    depends_on: tuple[str, ...] = ()  # alerts whose parameters this one reads (per override)

    @property
    def anchor(self) -> str:
        return self.name.lower()


# The label Prometheus sets on each exporter and Flower target to name the broker it reads (one
# exporter may probe several; prometheus/file_sd.py writes it). Every join, aggregation and
# Alertmanager grouping keeps it, so two brokers' `default` queues stay two. Absent on a target,
# it matches as empty: the job alone is then the broker.
BROKER_LABEL = "broker"
# Named in a description when the series carry it: "Queue default on broker payments ...".
ON_BROKER = "{{ with $labels.broker }} on broker {{ . }}{{ end }}"
# The labels one exporter target's series are joined on: one target may read several brokers.
TARGET = f"job, instance, {BROKER_LABEL}"
QUEUE = f"{TARGET}, queue_name"

# --- the series alerts read while the exporter or broker is blind ---------------------------
# name of the recording rule -> the exporter metric it holds
LAST_KNOWN = {
    "queue_name:celery_queue_length:last_known": "celery_queue_length",
    "queue_name:celery_queue_consumers:last_known": "celery_queue_consumers",
    "queue_name:celery_queue_oldest_message_age_seconds:last_known": "celery_queue_oldest_message_age_seconds",
    "queue_name:celery_queue_unacked_oldest_age_seconds:last_known": "celery_queue_unacked_oldest_age_seconds",
    "instance:celery_broker_visibility_timeout_seconds:last_known": "celery_broker_visibility_timeout_seconds",
}
WORKER_LAST_KNOWN = {"worker:celery_worker_up:last_known": "celery_worker_up"}


def last_known_expr(metric: str, hold: str) -> str:
    """The live series, or while the exporter cannot read the broker (down, or celery_broker_up 0)
    the last value seen within `hold`: an outage must not look like a recovery."""
    held = f"last_over_time({metric}[{hold}])"
    return f"{metric}\nor\n(\n  {held}\n  unless on ({TARGET})\n  (celery_broker_up == 1)\n)"


def _queue(metric: str, c: RuleContext) -> str:
    return q.selector(metric, c.matchers)


def _up(c: RuleContext, job_key: str) -> str:
    job = q.string(c.settings["jobs"][job_key])
    return f"up{{job={job}}} == 0\nor\nabsent(up{{job={job}}})"


def _exporter_up(c: RuleContext) -> str:
    """Every shape of a blind exporter target carries its job and instance (and broker), the labels
    of the queue alerts it held, which Alertmanager's inhibition matches on:
    - scraped and failing: up == 0;
    - gone from service discovery: seen within blind_hold (as long as its queue alerts are held),
      not now, and no live target for the same job and broker replaces it (a restarted pod);
    - no target of the job at all (never, or gone longer than blind_hold): only the job."""
    job = q.string(c.settings["jobs"]["exporter"])
    up = f"up{{job={job}}}"
    hold = c.settings["blind_hold"]
    return (
        f"{up} == 0\nor\n(\n  max_over_time({up}[{hold}])\n  unless on (job, instance, {BROKER_LABEL})\n  {up}\n"
        f"  unless on (job, {BROKER_LABEL})\n  ({up} == 1)\n)\nor\nabsent({up})"
    )


# --- queue alerts ---------------------------------------------------------------------------
def backlog(c: RuleContext) -> Built:
    t = q.number(c.params["threshold"])
    return Built(
        f"{_queue('queue_name:celery_queue_length:last_known', c)} > {t}",
        f"Queue {{{{ $labels.queue_name }}}}{ON_BROKER} holds {{{{ $value | humanize }}}} tasks waiting for a worker "
        f"(threshold {t}).",
    )


def backlog_critical(c: RuleContext) -> Built:
    crit = q.number(c.params["threshold"])
    warn = q.number(c.other("CeleryQueueBacklog")["threshold"])
    window, horizon, step = c.params["growth_window"], c.params["growth_horizon"], c.params["growth_rate_window"]
    length = _queue("queue_name:celery_queue_length:last_known", c)
    raw = _queue("celery_queue_length", c)
    # The slowest growth rate of any `step` stretch within `window`: a queue that grew all along.
    # (predict_linear would read a one-off batch of tasks as runaway growth.)
    slowest = f"min_over_time(deriv({raw}[{step}])[{window}:1m])"
    expr = (
        f"{length} > {crit}\nor\n(\n  {length} > {warn}\n  and on ({QUEUE})\n"
        f"  ({length} + {q.number(q.seconds(horizon))} * {slowest}) > {crit}\n"
        f"  and on ({QUEUE})\n  {raw} offset {window}\n)"
    )
    return Built(
        expr,
        f"Queue {{{{ $labels.queue_name }}}}{ON_BROKER} holds {{{{ $value | humanize }}}} tasks waiting: over "
        f"{crit}, or over {warn} and growing in every {step} of the last {window} at a pace that "
        f"passes {crit} within {horizon}.",
    )


def no_consumers(c: RuleContext) -> Built:
    n = q.number(c.params["min_waiting"])
    expr = (
        f"{_queue('queue_name:celery_queue_length:last_known', c)} >= {n}\n"
        f"and on ({QUEUE})\n"
        f"{_queue('queue_name:celery_queue_consumers:last_known', c)} == 0"
    )
    return Built(
        expr,
        f"Queue {{{{ $labels.queue_name }}}}{ON_BROKER} holds {{{{ $value | humanize }}}} tasks and no worker "
        "consumes it (inspect active_queues): they wait until a worker subscribes to this queue.",
    )


def latency(c: RuleContext) -> Built:
    t = c.params["threshold"]
    return Built(
        f"{_queue('queue_name:celery_queue_oldest_message_age_seconds:last_known', c)} > {q.number(t)}",
        f"The oldest task waiting in queue {{{{ $labels.queue_name }}}}{ON_BROKER} has waited "
        "{{ $value | humanizeDuration }} "
        f"(threshold {q.duration(t)}).",
    )


def unacked_stuck(c: RuleContext) -> Built:
    t = c.params["threshold"]
    age = _queue("queue_name:celery_queue_unacked_oldest_age_seconds:last_known", c)
    if t is None:
        expr = f"{age}\n> on ({TARGET}) group_left ()\ninstance:celery_broker_visibility_timeout_seconds:last_known"
        limit = "the broker's visibility timeout, celery_broker_visibility_timeout_seconds"
    else:
        expr = f"{age} > {q.number(t)}"
        limit = q.duration(t)
    return Built(
        expr,
        f"Queue {{{{ $labels.queue_name }}}}{ON_BROKER} has a message delivered "
        f"{{{{ $value | humanizeDuration }}}} ago and still not acknowledged, longer than {limit}: "
        "the worker holding it died or hangs, and the message runs again only when a live worker restores it.",
    )


# --- workers --------------------------------------------------------------------------------
def worker_down(c: RuleContext) -> Built:
    # Flower serves one broker and its target carries that broker's label, as the exporter's does.
    expr = f"worker:celery_worker_up:last_known == 0\nunless on ({BROKER_LABEL}, worker)\n(flower_worker_online == 0)"
    return Built(
        expr,
        f"Worker {{{{ $labels.worker }}}}{ON_BROKER} answered the exporter's inspect before and no longer does, and "
        "it did not shut down cleanly (no worker-offline event): it crashed, was killed (SIGKILL, "
        "OOM killer) or lost the broker.",
    )


# --- tasks ----------------------------------------------------------------------------------
def failure_rate(c: RuleContext) -> Built:
    window = c.settings["rate_window"]
    t, n = c.params["threshold"], c.params["min_completed"]
    expr = (
        f"{q.selector(f'task:flower_task_failures:ratio_rate{window}', c.matchers)} > {q.number(t)}\n"
        f"and on ({BROKER_LABEL}, task)\n"
        f"task:flower_task_completions:increase{window} >= {q.number(n)}"
    )
    return Built(
        expr,
        f"{{{{ $value | humanizePercentage }}}} of {{{{ $labels.task }}}} runs{ON_BROKER} failed over the last "
        f"{window} (threshold {q.percent(t)}, counted once {q.number(n)} runs finished in {window}).",
    )


def beat_missing(c: RuleContext) -> Built:
    period = c.item_params["period"]
    periods = c.params["missed_periods"]
    window = q.duration(q.seconds(period) * periods)
    b = BROKER_LABEL
    # A task listed with `brokers:` is expected on those brokers only: another Celery app of the
    # stack that never runs it must not page for it.
    only = [q.one_of(b, c.item_params["brokers"])] if c.item_params.get("brokers") else []
    s = q.selector("flower_events_total", ['type="task-succeeded"', q.equal("task", c.item), *only])
    # increase() cannot see a counter's first value, and Flower creates the series at the first
    # success (and again after its restart): a series younger than the window counts as one.
    flower_job = q.equal("job", c.settings["jobs"]["flower"])
    up = q.selector("up", [flower_job, *only])
    started = q.selector("process_start_time_seconds", [flower_job, *only])
    # A Flower younger than the window cannot have seen N periods (with no history from before).
    # Per broker (each Flower serves one): a broker whose Flower never saw the task counts 0; with
    # no Flower target at all, one broker-less 0 (CeleryFlowerDown fires then, and inhibits it).
    increase = f"sum by ({b}) (increase({s}[{window}]))"
    expr = (
        f"(\n  {increase}\n  +\n"
        f"  (count by ({b}) ({s} unless {s} offset {window}) or {increase} * 0)\n"
        f"  or\n  sum by ({b}) ({up}) * 0\n  or on ()\n  vector(0)\n) < 1\n"
        f"unless on ({b})\n"
        f"(time() - max by ({b}) ({started}) < {q.number(q.seconds(window))})"
    )
    return Built(
        expr,
        f"{c.item} has not succeeded{ON_BROKER} in the last {window} ({periods} periods of {period}): celery "
        "beat is down, the queue of the task is not consumed, or the task fails.",
        {"task": c.item},
    )


# --- the monitoring itself ------------------------------------------------------------------
def broker_down(c: RuleContext) -> Built:
    return Built(
        "celery_broker_up == 0",
        "The exporter {{ $labels.instance }} cannot read the Redis broker{{ with $labels.broker }} "
        "{{ . }}{{ end }}: no task can be published or "
        "consumed. Queue and worker alerts from it keep their last state and are inhibited.",
    )


def exporter_down(c: RuleContext) -> Built:
    return Built(
        _exporter_up(c),
        "Prometheus gets no metrics from {{ $labels.job }}{{ with $labels.instance }} at {{ . }}{{ end }}"
        f"{ON_BROKER}: queue and worker alerts are blind (they keep their last state for {c.settings['blind_hold']}, "
        "inhibited).",
    )


# --- what the exporter knows it cannot see ----------------------------------------------------
def queues_dropped(c: RuleContext) -> Built:
    return Built(
        "celery_exporter_queues_dropped > 0",
        f"The exporter {{{{ $labels.instance }}}}{ON_BROKER} finds {{{{ $value | humanize }}}} more queues than its "
        "--max-queues and does not report them: a backlog, a missing consumer or a stuck message in those queues "
        "alerts nobody.",
    )


def consumers_stale(c: RuleContext) -> Built:
    max_age = c.params["max_age"]
    age = f"time() - celery_queue_consumers_timestamp_seconds > {q.number(q.seconds(max_age))}"
    what = (
        "{{ if eq $value 0.0 }}reports no consumers reading at all (inspect refused, e.g. by the Redis "
        "ACL, failing since it started, or disabled){{ else }}last read the consumers "
        "{{ $value | humanizeDuration }} ago{{ end }}"
    )
    if c.params["required"]:
        # The exporter drops the reading when the broker refuses inspect (or it never succeeded):
        # an exporter whose reading is on but has none is blind to consumers. The value 0 tells
        # that case apart. An exporter run with the reading off says so (enabled 0): not an alert.
        missing = (
            "(\n  celery_exporter_consumers_reading_enabled == 1\n"
            f"  unless on (job, instance, {BROKER_LABEL})\n"
            "  celery_queue_consumers_timestamp_seconds\n) * 0"
        )
        expr = f"{age}\nor\n{missing}"
    else:
        expr = age
    return Built(
        expr,
        f"The exporter {{{{ $labels.instance }}}}{ON_BROKER} {what} (limit {max_age}): celery_queue_consumers and "
        "celery_worker_up are out of date or missing, so CeleryQueueNoConsumers and CeleryWorkerDown are blind.",
    )


# Errors of these reasons come and go with the broker's availability (CeleryBrokerDown's concern).
TRANSIENT_SCRAPE_ERRORS = (
    "redis",
    "rabbitmq_unreachable",
    "rabbitmq_auth",
    "rabbitmq_not_found",
    "rabbitmq_http",
    "malformed_reply",
)


def scrape_errors(c: RuleContext) -> Built:
    window = c.settings["rate_window"]
    transient = "|".join(TRANSIENT_SCRAPE_ERRORS)
    # In every window, over the whole `for:`: one malformed message consumed a moment later is not it.
    errors = f'increase(celery_exporter_scrape_errors_total{{reason!~"{transient}"}}[{window}]) > 0'
    unattributed = 'label_replace(celery_exporter_unacked_unattributed > 0, "reason", "unattributed_unacked", "", "")'
    return Built(
        f"{errors}\nor\n{unattributed}",
        f"The exporter {{{{ $labels.instance }}}}{ON_BROKER} keeps meeting "
        '{{ if eq $labels.reason "unattributed_unacked" }}{{ $value | humanize }} unacked messages it cannot '
        "attribute to a queue (their exchange and routing key match none it knows){{ else }}scrape errors of "
        "reason {{ $labels.reason }} ({{ $value | humanize }} in the last"
        f" {window}){{{{ end }}}}: what it reports about the affected queues is incomplete.",
    )


def flower_down(c: RuleContext) -> Built:
    return Built(
        _up(c, "flower"),
        "Prometheus gets no metrics from {{ $labels.job }}{{ with $labels.instance }} at {{ . }}{{ end }}"
        f"{ON_BROKER}: the task failure and periodic task alerts are blind.",
    )


ALERTS: tuple[AlertSpec, ...] = (
    AlertSpec(
        "CeleryQueueBacklog",
        "warning",
        Scope.QUEUE,
        "celery-queues",
        "Tasks are piling up in a Celery queue.",
        {"threshold": Param.NUMBER},
        backlog,
        QUEUES,
    ),
    AlertSpec(
        "CeleryQueueBacklogCritical",
        "critical",
        Scope.QUEUE,
        "celery-queues",
        "A Celery queue's backlog is very large or growing out of control.",
        {
            "threshold": Param.NUMBER,
            "growth_window": Param.DURATION,
            "growth_rate_window": Param.DURATION,
            "growth_horizon": Param.DURATION,
        },
        backlog_critical,
        QUEUES,
        depends_on=("CeleryQueueBacklog",),
    ),
    AlertSpec(
        "CeleryQueueNoConsumers",
        "critical",
        Scope.QUEUE,
        "celery-queues",
        "Tasks wait in a Celery queue that no worker consumes.",
        {"min_waiting": Param.COUNT},
        no_consumers,
        QUEUES,
    ),
    AlertSpec(
        "CeleryQueueLatencyHigh",
        "warning",
        Scope.QUEUE,
        "celery-queues",
        "Tasks wait too long in a Celery queue before a worker takes them.",
        {"threshold": Param.NUMBER},
        latency,
        QUEUES,
    ),
    AlertSpec(
        "CeleryUnackedStuck",
        "warning",
        Scope.QUEUE,
        "celery-queues",
        "A Celery message is held unacknowledged longer than the visibility timeout.",
        {"threshold": Param.SECONDS_OR_NULL},
        unacked_stuck,
        QUEUES,
    ),
    AlertSpec(
        "CeleryWorkerDown",
        "warning",
        Scope.WORKER,
        "celery-workers",
        "A Celery worker disappeared without shutting down.",
        {},
        worker_down,
        WORKERS,
    ),
    AlertSpec(
        "CeleryTaskFailureRateHigh",
        "warning",
        Scope.TASK,
        "celery-tasks",
        "A Celery task fails often.",
        {"threshold": Param.RATIO, "min_completed": Param.COUNT},
        failure_rate,
        WORKERS,
    ),
    AlertSpec(
        "CeleryBeatMissing",
        "warning",
        Scope.BEAT,
        "celery-tasks",
        "A periodic Celery task stopped succeeding.",
        {"missed_periods": Param.COUNT, "tasks": Param.PERIODS},
        beat_missing,
        WORKERS,
    ),
    AlertSpec(
        "CeleryBrokerDown",
        "critical",
        Scope.GLOBAL,
        "celery-monitoring",
        "The Celery broker (Redis) is unreachable.",
        {},
        broker_down,
        OVERVIEW,
    ),
    AlertSpec(
        "CeleryExporterDown",
        "critical",
        Scope.GLOBAL,
        "celery-monitoring",
        "Prometheus cannot scrape the Celery queue exporter.",
        {},
        exporter_down,
        OVERVIEW,
    ),
    AlertSpec(
        "CeleryExporterQueuesDropped",
        "warning",
        Scope.GLOBAL,
        "celery-monitoring",
        "The Celery queue exporter does not report every queue.",
        {},
        queues_dropped,
        OVERVIEW,
    ),
    AlertSpec(
        "CeleryExporterConsumersStale",
        "warning",
        Scope.GLOBAL,
        "celery-monitoring",
        "The Celery queue exporter's reading of consumers and workers is stale or missing.",
        {"max_age": Param.DURATION, "required": Param.BOOL},
        consumers_stale,
        OVERVIEW,
    ),
    AlertSpec(
        "CeleryExporterScrapeErrors",
        "warning",
        Scope.GLOBAL,
        "celery-monitoring",
        "The Celery queue exporter keeps meeting keys or messages it cannot read.",
        {},
        scrape_errors,
        OVERVIEW,
    ),
    AlertSpec(
        "CeleryFlowerDown",
        "warning",
        Scope.GLOBAL,
        "celery-monitoring",
        "Prometheus cannot scrape Flower.",
        {},
        flower_down,
        OVERVIEW,
    ),
)
BY_NAME: dict[str, AlertSpec] = {a.name: a for a in ALERTS}
