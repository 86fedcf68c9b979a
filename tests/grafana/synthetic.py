"""Synthetic metrics shaped like the exporter's and Flower 2.2's, as OpenMetrics for backfilling.

The scenario has a bit of everything a panel can show: a queue that grew past the alert
threshold and now drains, a queue nobody consumes, a queue with its own (higher) threshold in
prometheus/alerting.yml that it stays under, two workers of which one stops answering the
exporter's inspect while Flower still believes it online (a SIGKILL), a producer host, tasks
that succeed, fail and retry. Names and labels are those of celery-queue-exporter and Flower 2.2.
"""

from __future__ import annotations

from collections.abc import Iterator

from grafana.alerting_layer import BACKLOG
from prometheus.file_sd import DEFAULT_BROKER, per_broker_jobs

WORKERS = ("celery@worker1", "celery@worker2")
PRODUCER = "producer@web1"  # task-sent events carry the producer's hostname as `worker`
TASKS = ("tasks.add", "tasks.flaky")
# A queue with its own, higher CeleryQueueBacklog threshold in prometheus/alerting.yml (`bulk`),
# holding more than the default threshold and less than its own: no alert, not "over threshold".
BIG_QUEUE, BIG_QUEUE_THRESHOLD = next(((q, t) for q, t in BACKLOG.overrides.items() if t > BACKLOG.default), ("", 0))
BIG_QUEUE_BACKLOG = (BACKLOG.default + BIG_QUEUE_THRESHOLD) // 2
QUEUES = ("default", "periodic_tasks", "demo", *((BIG_QUEUE,) if BIG_QUEUE else ()))
KILLED_WORKER = WORKERS[1]  # stops answering the exporter's inspect at 80% of the window
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
JOBS = {
    "celery-queue-exporter": "exporter:9818",
    "flower": "flower:5555",
    "prometheus": "localhost:9090",
    "alertmanager": "alertmanager:9093",
}
# The exporter's view of its own blind spots: queues beyond --max-queues, the age of its
# consumers reading (inspect every CONSUMERS_INTERVAL_S, so a saw-tooth below it), errors by
# reason (the reasons celery_exporter_scrape_errors_total always carries) and unattributed unacked.
QUEUES_DROPPED = 7
CONSUMERS_INTERVAL_S = 30
ERROR_RATES = {"malformed_message": 0.0, "malformed_unacked": 0.0, "redis": 0.0, "wrong_type": 0.2}
UNACKED_UNATTRIBUTED = 3
PEAK_BACKLOG = 1600
END_BACKLOG = 1200  # still above the 1000 threshold, and shrinking
# Events per second per worker and task: (type, task) -> rate.
EVENT_RATES = {
    ("task-received", "tasks.add"): 2.0,
    ("task-started", "tasks.add"): 2.0,
    ("task-succeeded", "tasks.add"): 2.0,
    ("task-received", "tasks.flaky"): 0.5,
    ("task-started", "tasks.flaky"): 0.5,
    ("task-succeeded", "tasks.flaky"): 0.2,
    ("task-retried", "tasks.flaky"): 0.2,
    ("task-failed", "tasks.flaky"): 0.1,
}
RUNTIME_S = {"tasks.add": 0.04, "tasks.flaky": 0.9}


# Prometheus adds the `broker` label of the exporter's and Flower's targets (file_sd) to every
# series scraped from them; Prometheus' and Alertmanager's own targets carry none.
BROKER = DEFAULT_BROKER
_BROKERLESS_JOBS = set(JOBS) - per_broker_jobs()


def _labels(**labels: str) -> str:
    if labels.get("job") not in _BROKERLESS_JOBS:
        labels = {"broker": BROKER, **labels}
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _default_backlog(progress: float) -> float:
    """Rises to the peak over the first 40% of the window, then drains to END_BACKLOG."""
    if progress < 0.4:
        return PEAK_BACKLOG * progress / 0.4
    return PEAK_BACKLOG - (PEAK_BACKLOG - END_BACKLOG) * (progress - 0.4) / 0.6


def openmetrics(start: float, end: float, step: float = 5.0) -> str:
    """All samples from `start` to `end` (Unix seconds), one MetricFamily after another."""
    times = [start + i * step for i in range(int((end - start) / step) + 1)]

    def gauge(name: str, series: list[tuple[dict[str, str], object]]) -> Iterator[str]:
        # value: a number, or a function of (t, progress) for a changing value
        yield f"# TYPE {name} gauge"
        for labels, value in series:
            for t in times:
                v = value(t, (t - start) / (end - start)) if callable(value) else value
                yield f"{name}{_labels(**labels)} {v:.12g} {t:.3f}"  # Unix times need 10 digits

    def counter(family: str, series: list[tuple[dict[str, str], float]]) -> Iterator[str]:
        yield f"# TYPE {family} counter"
        for labels, rate in series:
            for t in times:
                yield f"{family}_total{_labels(**labels)} {rate * (t - start):.6g} {t:.3f}"

    def runtime_histogram() -> Iterator[str]:
        family = "flower_task_runtime_seconds"
        yield f"# TYPE {family} histogram"
        for worker in WORKERS:
            for task in TASKS:
                rate = EVENT_RATES[("task-succeeded", task)] + EVENT_RATES.get(("task-failed", task), 0)
                for t in times:
                    count = rate * (t - start)
                    labels = {"worker": worker, "task": task}
                    for le in BUCKETS:  # every call takes RUNTIME_S[task]
                        below = count if RUNTIME_S[task] <= le else 0
                        yield f"{family}_bucket{_labels(**labels, le=str(le))} {below:.6g} {t:.3f}"
                    yield f"{family}_bucket{_labels(**labels, le='+Inf')} {count:.6g} {t:.3f}"
                    yield f"{family}_count{_labels(**labels)} {count:.6g} {t:.3f}"
                    yield f"{family}_sum{_labels(**labels)} {count * RUNTIME_S[task]:.6g} {t:.3f}"

    backlog = {
        "default": lambda t, p: _default_backlog(p),
        "periodic_tasks": 3,
        "demo": 50,  # published, nobody consumes it
        BIG_QUEUE: BIG_QUEUE_BACKLOG,  # over the default threshold, under its own
    }
    consumers = {"default": 2, "periodic_tasks": 2, "demo": 0, BIG_QUEUE: 1}

    def share(queue: str, fraction: float):
        value = backlog[queue]
        return (lambda t, p: value(t, p) * fraction) if callable(value) else value * fraction

    lines: list[str] = []
    lines += gauge("celery_queue_length", [({"queue_name": q}, backlog[q]) for q in QUEUES])
    lines += gauge(
        "celery_queue_priority_length",
        [({"queue_name": q, "priority": p}, share(q, f)) for q in QUEUES for p, f in (("0", 0.7), ("9", 0.3))],
    )
    lines += gauge("celery_queue_unacked", [({"queue_name": q}, 8 if consumers[q] else 0) for q in QUEUES])
    lines += gauge(
        "celery_queue_oldest_message_age_seconds",
        [
            ({"queue_name": "default"}, lambda t, p: 30 + (t - start) / 10),
            ({"queue_name": "periodic_tasks"}, 2),
            ({"queue_name": "demo"}, lambda t, p: t - start),  # waits since the start
            *([({"queue_name": BIG_QUEUE}, 600)] if BIG_QUEUE else []),
        ],
    )
    lines += gauge("celery_queue_unacked_oldest_age_seconds", [({"queue_name": q}, 4) for q in QUEUES])
    lines += gauge("celery_queue_consumers", [({"queue_name": q}, consumers[q]) for q in QUEUES])
    lines += gauge(
        "celery_worker_up",
        [({"worker": w}, (lambda t, p: 1 if p < 0.8 else 0) if w == KILLED_WORKER else 1) for w in WORKERS],
    )
    lines += gauge("celery_broker_up", [({}, 1)])
    lines += gauge("celery_exporter_scrape_duration_seconds", [({}, 0.02)])
    lines += counter("celery_exporter_scrape_errors", [({"reason": r}, rate) for r, rate in ERROR_RATES.items()])
    lines += gauge("celery_exporter_queues_dropped", [({}, QUEUES_DROPPED)])
    lines += gauge("celery_exporter_unacked_unattributed", [({}, UNACKED_UNATTRIBUTED)])
    lines += gauge(
        "celery_queue_consumers_timestamp_seconds",
        [({}, lambda t, p: t - (t - start) % CONSUMERS_INTERVAL_S)],
    )
    lines += gauge("celery_exporter_build_info", [({"version": "0.1.0"}, 1)])
    lines += gauge("up", [({"job": job, "instance": instance}, 1) for job, instance in JOBS.items()])
    lines += gauge("scrape_duration_seconds", [({"job": job, "instance": i}, 0.05) for job, i in JOBS.items()])

    events = [
        ({"worker": w, "type": kind, "task": task}, rate) for w in WORKERS for (kind, task), rate in EVENT_RATES.items()
    ]
    events += [({"worker": PRODUCER, "type": "task-sent", "task": task}, 2.5) for task in TASKS]
    lines += counter("flower_events", events)
    lines += runtime_histogram()
    lines += gauge(
        "flower_task_prefetch_time_seconds", [({"worker": w, "task": k}, 0.3) for w in WORKERS for k in TASKS]
    )
    lines += gauge("flower_worker_prefetched_tasks", [({"worker": w, "task": k}, 2) for w in WORKERS for k in TASKS])
    lines += gauge("flower_worker_online", [({"worker": w}, 1) for w in WORKERS])
    lines += gauge("flower_worker_number_of_currently_executing_tasks", [({"worker": w}, 4) for w in WORKERS])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# The real alert's condition (default threshold, and their own for overridden queues), evaluated
# by the test Prometheus so ALERTS / ALERTS_FOR_STATE exist with the labels a real alert has
# (for: 0s so it fires at once).
BACKLOG_RULES = {
    "groups": [
        {
            "name": "synthetic",
            "interval": "1s",
            "rules": [
                {
                    "alert": "CeleryQueueBacklog",
                    "expr": BACKLOG.exceeded("celery_queue_length"),
                    "labels": {"severity": "warning"},
                }
            ],
        }
    ]
}
