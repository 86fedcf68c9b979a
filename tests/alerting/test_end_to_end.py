"""The alerting layer end to end, on the real stack (Redis, a Celery worker, Flower, the exporter,
Prometheus with the generated rules, Alertmanager with the repository's routing, the receiver):

- a backlog's 1001st task to the firing notification, and draining to the resolved one, each
  within the floor the configuration implies + 10 s;
- a SIGKILLed worker (Flower keeps it "online") is delivered as CeleryWorkerDown;
- a stopped exporter is delivered as CeleryExporterDown while the queue alerts it can no longer
  see hold their state, inhibited: no page per queue, and no false "resolved".

One stack for the module. A test that stops a component starts it again and waits until
Prometheus sees it back before it ends, so every test begins on a whole stack, in any order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from prometheus import generate
from prometheus.bench.alert_latency import TARGET_MARGIN_S, Floors, _app, measure, publish
from tests.support.procs import wait_until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # The exporter's inspect reading every second, so a dead worker shows within a few seconds.
    s = LocalStack(
        Path(tmp_path_factory.mktemp("alerting")),
        extra_env={"CELERY_EXPORTER_CONSUMERS_INTERVAL": "1"},
    )
    with s.running():
        yield s


@contextmanager
def restored(stack: LocalStack, name: str, back: Callable[[], object], what: str) -> Iterator[None]:
    """Start `name` again after the block, and wait until `back()` says the stack sees it."""
    try:
        yield
    finally:
        stack.start_component(name, wait=False)
        wait_until(back, 60, what)


def notifications(stack: LocalStack, alertname: str, status: str, **labels: str) -> list[dict]:
    return [
        {**a, "received_unix": r["received_unix"]}
        for r in stack.receiver_records()
        for a in r["payload"]["alerts"]
        if a["labels"].get("alertname") == alertname
        and a["status"] == status
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def alertmanager_alerts(stack: LocalStack, alertname: str) -> list[dict]:
    reply = requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5)
    return [a for a in reply.json() if a["labels"].get("alertname") == alertname]


def test_backlog_fires_and_resolves_within_the_floor_plus_10s(stack: LocalStack) -> None:
    floors = Floors.of(stack)
    result = measure(stack, "e2e_backlog")
    print(f"\n{result.hops()}; floors: firing {floors.fire:g}s, resolved {floors.resolve:g}s")
    assert result.fire_s <= floors.fire + TARGET_MARGIN_S, result.hops()
    assert result.resolve_s <= floors.resolve + TARGET_MARGIN_S, result.hops()

    fired = notifications(stack, "CeleryQueueBacklog", "firing", queue_name="e2e_backlog")[0]
    assert fired["labels"]["severity"] == "warning"
    assert fired["annotations"]["description"].startswith("Queue e2e_backlog on broker default holds 1.001k tasks")
    assert fired["annotations"]["runbook_url"] == "docs/runbooks.md#celeryqueuebacklog"
    link = fired["annotations"]["dashboard_url"]
    assert link.endswith("/d/celery-queues?var-queue_name=e2e_backlog&var-broker=default")
    # routed by severity: the warning receiver, which also carries the local webhook
    receivers = {
        r["payload"]["receiver"]
        for r in stack.receiver_records()
        for a in r["payload"]["alerts"]
        if a["labels"].get("alertname") == "CeleryQueueBacklog"
    }
    assert receivers == {"warning"}
    # nobody consumes the queue: that is critical on its own, and routed as such
    no_consumers = wait_until(
        lambda: notifications(stack, "CeleryQueueNoConsumers", "firing", queue_name="e2e_backlog"),
        30,
        "CeleryQueueNoConsumers for the unconsumed queue",
    )
    assert no_consumers[0]["labels"]["severity"] == "critical"


def test_a_sigkilled_worker_is_delivered_as_worker_down(stack: LocalStack) -> None:
    def flower_online() -> list[dict]:
        return stack.query('flower_worker_online{worker=~"e2e-worker@.*"} == 1')

    worker = wait_until(flower_online, 30, "Flower to report the worker online")[0]["metric"]["worker"]
    query = f'celery_worker_up{{worker="{worker}"}} == 1'
    wait_until(lambda: stack.query(query), 20, "the exporter to see the worker answer")
    killed_at = time.time()
    with restored(stack, "worker", lambda: stack.query(query), "the restarted worker to answer inspect"):
        stack.stop_component("worker", signal.SIGKILL)  # a crash: no worker-offline event, nothing cleaned up

        # Why Flower's signal cannot be the alert: well past two missed heartbeats, still "online".
        time.sleep(10)
        assert flower_online(), "Flower marked the SIGKILLed worker offline after all"

        down = wait_until(
            lambda: notifications(stack, "CeleryWorkerDown", "firing", worker=worker), 60, "CeleryWorkerDown delivered"
        )[0]
        print(f"\nCeleryWorkerDown delivered {down['received_unix'] - killed_at:.1f}s after the SIGKILL")
        assert down["labels"]["severity"] == "warning"
        assert worker in down["annotations"]["description"]
        assert stack.query(f'flower_worker_online{{worker="{worker}"}} == 1'), "Flower still shows it online"


def test_a_stopped_exporter_pages_once_and_queue_alerts_hold_inhibited(stack: LocalStack) -> None:
    app_queue = "e2e_blind"
    app = _app(stack)
    try:
        publish(app, app_queue, 5)
    finally:
        app.close()
    wait_until(
        lambda: notifications(stack, "CeleryQueueNoConsumers", "firing", queue_name=app_queue),
        60,
        "CeleryQueueNoConsumers delivered for a queue nobody consumes",
    )

    job = generate.load().jobs["exporter"]
    exporter_up = f'up{{job="{job}"}} == 1 and on (instance) celery_broker_up == 1'
    with restored(stack, "exporter", lambda: stack.query(exporter_up), "Prometheus to scrape the exporter again"):
        # queue alerts firing now: from here on, any notification about them would be a page or a
        # false "resolved" from a blind exporter (alerts of earlier tests may still resolve late)
        blind = {
            a["labels"]["queue_name"]
            for a in stack.prometheus_alerts()
            if a["state"] == "firing" and "queue_name" in a["labels"]
        }
        assert app_queue in blind
        stopped_at = time.time()
        stack.stop_component("exporter")
        down = wait_until(
            lambda: notifications(stack, "CeleryExporterDown", "firing"), 60, "CeleryExporterDown delivered"
        )[0]
        print(f"\nCeleryExporterDown delivered {down['received_unix'] - stopped_at:.1f}s after the exporter stopped")
        assert down["labels"]["severity"] == "critical"

        # Several group intervals later: the queue alert still fires in Prometheus (held), is
        # suppressed by the inhibition in Alertmanager, and no "resolved" went out for it.
        time.sleep(6)
        held = [
            a
            for a in stack.prometheus_alerts()
            if a["labels"]["alertname"] == "CeleryQueueNoConsumers" and a["labels"].get("queue_name") == app_queue
        ]
        assert held and held[0]["state"] == "firing", held
        suppressed = [
            a for a in alertmanager_alerts(stack, "CeleryQueueNoConsumers") if a["labels"]["queue_name"] == app_queue
        ]
        assert suppressed and suppressed[0]["status"]["state"] == "suppressed", suppressed
        assert suppressed[0]["status"]["inhibitedBy"], suppressed
        assert not notifications(stack, "CeleryQueueNoConsumers", "resolved", queue_name=app_queue)
        # nothing new about queues reached the receiver since the outage began
        queue_pages = [
            a
            for r in stack.receiver_records()
            if r["received_unix"] > stopped_at + 1
            for a in r["payload"]["alerts"]
            if "queue_name" in a["labels"] and (a["status"] == "firing" or a["labels"]["queue_name"] in blind)
        ]
        assert not queue_pages, queue_pages
