"""The soak's load: a steady, sustainable mix of tasks published with workers.load, in ticks.

Every tick publishes the same steady mix; some ticks add a task that fails for good or a burst
that fills a queue and drains. Sized for the production thresholds of prometheus/alerting.yml
on a 2-core machine running the whole stack (worker: prefork, one process per core):
- about 7 tasks/s of quick tasks, all consumed (no queue without consumers);
- `retry` tasks (fail once, succeed on their retry) outnumber `failing` ones (fail for good after
  their retries) about 20 to 1 per 5 minutes, so failing_task's failure ratio stays near 5%,
  under CeleryTaskFailureRateHigh's 10%;
- bursts of at most 600 tasks (CeleryQueueBacklog: 1000) that drain within about a minute
  (CeleryQueueLatencyHigh: 300 s);
- periodic tasks come from beat itself (every 30 s), not from here.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from celery import Celery

from workers import load

TICK_S = 10.0


@dataclass(frozen=True)
class Batch:
    """One `python -m workers.load` call: its arguments, and a name for the progress output."""

    name: str
    argv: tuple[str, ...]


def _batch(name: str, task: str, count: int, *extra: str) -> Batch:
    return Batch(name, ("--task", task, "--count", str(count), *extra))


# Every tick (TICK_S seconds): 66 quick tasks, 2 that recover on their retry.
STEADY = (
    _batch("add", "add", 30),
    _batch("sqrt", "sqrt", 10),
    _batch("bind", "bind", 5),
    _batch("log info", "log", 3, "--level", "info"),
    _batch("log warning", "log", 2, "--level", "warning"),
    _batch("log error", "log", 1, "--level", "error"),
    _batch("ack 0.2s", "ack", 4, "--seconds", "0.2"),
    _batch("no_ack 0.2s", "no_ack", 4, "--seconds", "0.2"),
    _batch("retry", "retry", 2),
)
FAILING = _batch("failing", "failing", 1)  # ends FAILURE after 3 retries (5 s apart)
FAILING_EVERY = 9  # ticks: one every 90 s
# (every N ticks, at tick offset, batch): queues that fill and drain below the backlog threshold
BURSTS = (
    (30, 6, _batch("burst default", "no_ack", 600, "--seconds", "0.1")),  # ~30 s of work for 2 processes
    (30, 21, _batch("burst transient_logs", "log", 300, "--level", "debug")),
)


def batches(tick: int) -> list[Batch]:
    """What tick number `tick` (0, 1, ...) publishes."""
    out = list(STEADY)
    if tick % FAILING_EVERY == FAILING_EVERY - 1:
        out.append(FAILING)
    out += [batch for every, offset, batch in BURSTS if tick % every == offset]
    return out


def describe() -> str:
    """The profile in one paragraph, for the progress output and docs."""
    steady = ", ".join(f"{b.argv[3]} {b.name}" for b in STEADY)
    bursts = "; ".join(
        f"{b.argv[3]} {b.name.removeprefix('burst ')} every {every * TICK_S / 60:g} min" for every, _, b in BURSTS
    )
    return (
        f"every {TICK_S:g} s: {steady}; 1 failing every {FAILING_EVERY * TICK_S:g} s; bursts: {bursts}; "
        "beat's periodic task every 30 s"
    )


def publish(app: Celery, tick: int, published: Counter[str]) -> None:
    """Publish tick `tick`'s batches with workers.load, counting them in `published`."""
    for batch in batches(tick):
        args = load.parse_args(batch.argv)
        with contextlib.redirect_stderr(io.StringIO()):  # workers.load's progress bar
            count, _, _ = load.publish(app, args)
        published[batch.name] += count


def totals(published: Mapping[str, int], order: Sequence[Batch] = (*STEADY, FAILING)) -> str:
    names = [b.name for b in order] + sorted(set(published) - {b.name for b in order})
    return ", ".join(f"{name} {published[name]}" for name in names if published.get(name))
