"""The ScaledObject's query, run against the live Prometheus of the test stack (real Redis,
worker, exporter, Prometheus): one sample, 0 with nothing to do, rising with a backlog over every
priority list, and still counting the tasks workers hold unacknowledged while they run them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.kubernetes.manifests import DEMO, build, find
from tests.support.procs import wait_until
from tests.support.stack import LocalStack
from workers.routing import WORKER_QUEUES

WAITING = 12  # tasks published before any worker runs
URGENT = 3  # of which at priority 9: kombu's other priority list
HOLD_S = 60  # each task sleeps this long, acks_late: held unacked while it runs


def _value(stack: LocalStack, query: str) -> float:
    result = stack.query(query)
    assert len(result) == 1, f"KEDA needs exactly one sample, got {result}"
    return float(result[0]["value"][1])


@pytest.mark.slow
def test_scaled_object_query_counts_waiting_and_held_tasks(tmp_path: Path) -> None:
    (scaled,) = find(build(DEMO), "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    activation = float(trigger["metadata"]["activationThreshold"])
    # The exporter as the overlay configures it: the workers' queues reported even with no worker.
    stack = LocalStack(tmp_path, args={"exporter": ["--queues", WORKER_QUEUES]})
    stack.start(defer={"worker"})
    try:
        # Scaled to zero: the query still answers, with 0, so KEDA neither errors nor activates.
        wait_until(lambda: stack.query(query), 20, "the query to answer with no worker running")
        assert _value(stack, query) == 0 <= activation

        stack.publish("--task", "ack", "--seconds", str(HOLD_S), "--count", str(WAITING - URGENT))
        stack.publish("--task", "ack", "--seconds", str(HOLD_S), "--count", str(URGENT), "--priority", "9")
        wait_until(lambda: _value(stack, query) == WAITING, 20, f"the query to show {WAITING} waiting tasks")
        assert activation < WAITING

        # A worker takes tasks: they move from waiting to held (running or prefetched, acks_late),
        # and the query must not drop, or KEDA would scale away the worker that runs them.
        stack.start_component("worker")
        held = 'sum(celery_queue_unacked{job="celery-queue-exporter"})'
        wait_until(lambda: _value(stack, held) >= 4, 30, "the worker to hold tasks unacknowledged")
        assert _value(stack, query) == WAITING
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        # the worker would finish its 60 s tasks on a warm shutdown: kill it
        if "worker" in stack.procs:
            stack.stop_component("worker", signal.SIGKILL)
        stack.stop()
