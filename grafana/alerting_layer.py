"""What the dashboards read from the alerting layer: thresholds, `for:` durations, per-queue
overrides and recording rule names.

prometheus/alerting.yml is the one source of them; prometheus.generate turns it into the rules.
The dashboards read the same file through the same code, so a threshold drawn on a panel and the
alert cannot drift apart. Nothing here is written by hand but kombu's default visibility timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus.generate import AlertingConfig, promql
from prometheus.generate import load as load_alerting
from prometheus.generate.rules import recording_group

ALERTING: AlertingConfig = load_alerting()
# Window of the task rate recording rules (their names end in rate5m / increase5m).
RATE_WINDOW: str = ALERTING.rate_window
# Recording rules that prometheus.generate writes (prometheus/rules/<profile>/celery-recording.yml).
RECORDING_RULES: frozenset[str] = frozenset(rule["record"] for rule in recording_group(ALERTING)["rules"])


def recorded(name: str) -> str:
    """The name of a recording rule of the alerting layer; an error if the generator has none."""
    if name not in RECORDING_RULES:
        raise LookupError(f"no recording rule {name!r} in prometheus.generate (has: {sorted(RECORDING_RULES)})")
    return name


class Rec:
    """The recording rules the dashboards read instead of the raw metrics (same series as the alerts).

    Task rules aggregate `worker` away (task-sent events carry the producer's hostname): a panel
    reading them shows all workers, whatever the $worker variable says.
    """

    QUEUE_LENGTH = recorded("queue_name:celery_queue_length:sum")  # by queue_name
    EVENTS_RATE = recorded(f"task_type:flower_events:rate{RATE_WINDOW}")  # by task, type
    RUNTIME_P50 = recorded(f"task:flower_task_runtime_seconds:p50_rate{RATE_WINDOW}")  # by task
    RUNTIME_P90 = recorded(f"task:flower_task_runtime_seconds:p90_rate{RATE_WINDOW}")
    RUNTIME_P99 = recorded(f"task:flower_task_runtime_seconds:p99_rate{RATE_WINDOW}")


_S = TypeVar("_S")


@dataclass(frozen=True)
class QueueThreshold:
    """The threshold of a per-queue alert: its default, and the queues with their own.

    The generator writes one rule for the default (`queue_name!="bulk"`) and one per overridden
    queue (`queue_name="bulk"`); `exceeded()` is the same split in PromQL.
    """

    alert: str
    default: float
    for_: str  # production's `for:`
    overrides: Mapping[str, float]  # queue_name -> its own threshold (only those that differ)

    def exceeded(self, metric: str, matchers: Sequence[str] = ()) -> str:
        """PromQL: the series of `metric` (by queue_name) above their queue's threshold."""
        if not self.overrides:
            return f"{promql.selector(metric, matchers)} > {promql.number(self.default)}"
        rest = [*matchers, *(promql.not_equal("queue_name", q) for q in self.overrides)]
        parts = [f"{promql.selector(metric, rest)} > {promql.number(self.default)}"]
        parts += [
            f"{promql.selector(metric, [*matchers, promql.equal('queue_name', q)])} > {promql.number(t)}"
            for q, t in self.overrides.items()
        ]
        return " or ".join(parts)

    def steps(self, make: Callable[[float], _S]) -> tuple[_S, dict[str, _S]]:
        """`make(threshold)` for the default, and per overridden queue (a series named after it)."""
        return make(self.default), {queue: make(t) for queue, t in self.overrides.items()}

    def listing(self, unit: str = "") -> str:
        """The overridden queues for a description, e.g. 'bulk: 50000'; '' when there is none."""
        return ", ".join(f"{q}: {promql.number(t)}{unit}" for q, t in self.overrides.items())


def queue_threshold(alert: str) -> QueueThreshold:
    default = ALERTING.params(alert)
    overrides = {}
    for queue in ALERTING.override_values("queue_name", (alert,)):
        threshold = ALERTING.params(alert, "queue_name", queue)["threshold"]
        if threshold != default["threshold"]:
            overrides[queue] = threshold
    return QueueThreshold(alert, default["threshold"], default["for"], overrides)


# CeleryQueueBacklog: celery_queue_length above this for `for:`; graphs draw the line.
BACKLOG = queue_threshold("CeleryQueueBacklog")
BACKLOG_ALERT_THRESHOLD = BACKLOG.default
# CeleryQueueLatencyHigh: the oldest ready task older than this (seconds) turns red.
LATENCY = queue_threshold("CeleryQueueLatencyHigh")
OLDEST_WAIT_CRIT_S = LATENCY.default
# Celery's Redis transport redelivers a task still unacknowledged after visibility_timeout
# (default one hour): an unacked message that old is about to run twice. CeleryUnackedStuck
# fires past it (threshold null: the visibility timeout the exporter reports, drawn at kombu's
# default), or past its own threshold when alerting.yml sets one.
KOMBU_VISIBILITY_TIMEOUT_S = 3600
UNACKED_ALERT_THRESHOLD_S: float | None = ALERTING.params("CeleryUnackedStuck")["threshold"]
VISIBILITY_TIMEOUT_S = UNACKED_ALERT_THRESHOLD_S or KOMBU_VISIBILITY_TIMEOUT_S
# CeleryTaskFailureRateHigh: failed / finished per task over rate_window.
FAILURE_RATIO_CRIT = ALERTING.params("CeleryTaskFailureRateHigh")["threshold"]
