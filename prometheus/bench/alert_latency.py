"""How long from a queue crossing its threshold to the notification, and from draining to the
resolved notification, measured on the real stack (Redis, exporter, Prometheus, Alertmanager,
receiver as processes on free ports of 127.0.0.1).

    .venv/bin/python -m prometheus.bench.alert_latency [--rounds 5] [--interval 1s] [--for 5s]
        [--group-wait 1s] [--group-interval 2s]

Each round uses a fresh queue that no worker consumes: publish 1000 tasks, let Prometheus see
them, publish the 1001st (t0) and wait for CeleryQueueBacklog's firing notification at the
receiver; then take one task off the queue (RPOP, as a consumer does: back to 1000, t1) and wait
for the resolved notification. Printed against the floor the configuration implies:
  firing:   scrape interval + evaluation interval + for + group_wait
  resolved: scrape interval + evaluation interval + group_interval
(each term is the longest that step can take: the worst case of a perfectly fast stack).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from celery import Celery

from native.child_stack import LocalStack
from native.processes import wait_until
from prometheus.generate import promql

ALERT = "CeleryQueueBacklog"
THRESHOLD = 1000
TARGET_MARGIN_S = 10.0


@dataclass(frozen=True)
class Floors:
    fire: float
    resolve: float

    @classmethod
    def of(cls, stack: LocalStack) -> Floors:
        interval = promql.seconds(stack.interval)  # the stack's scrape and evaluation interval
        group_wait = promql.seconds(stack.timings["group_wait"])
        group_interval = promql.seconds(stack.timings["group_interval"])
        return cls(
            fire=interval + interval + promql.seconds(stack.alert_for) + group_wait,
            resolve=interval + interval + group_interval,
        )


@dataclass(frozen=True)
class Round:
    queue: str
    fire_s: float
    resolve_s: float
    fire_hops: dict[str, float]
    resolve_hops: dict[str, float]

    def hops(self) -> str:
        show = lambda hops: ", ".join(f"{k} +{v:.1f}s" for k, v in hops.items())  # noqa: E731
        return f"firing: {show(self.fire_hops)}; resolved: {show(self.resolve_hops)}"


def _app(stack: LocalStack) -> Celery:
    from workers import tasks  # noqa: F401 - registers the shared tasks with the app
    from workers.app import create_app
    from workers.config import Settings

    return create_app(Settings(broker_url=stack.broker_url, result_backend=stack.broker_url))


def publish(app: Celery, queue: str, count: int) -> None:
    """What `python -m workers.load --queue Q --count N` does (the queue's binding declared first,
    so a queue nobody consumes keeps its tasks), in this process: no interpreter start in t0."""
    from workers.load import parse_args
    from workers.load import publish as load

    load(app, parse_args(["--queue", queue, "--count", str(count)]))


def _notification(stack: LocalStack, queue: str, status: str, after: float) -> float | None:
    """Arrival time (Unix) of the first `status` notification of the alert for `queue` after `after`."""
    for record in stack.receiver_records():
        if record.get("received_unix", 0) < after:
            continue
        for alert in record["payload"]["alerts"]:
            labels = alert["labels"]
            if labels.get("alertname") == ALERT and labels.get("queue_name") == queue and alert["status"] == status:
                return record["received_unix"]
    return None


def _prometheus_state(stack: LocalStack, queue: str) -> str:
    for alert in stack.prometheus_alerts():
        if alert["labels"].get("alertname") == ALERT and alert["labels"].get("queue_name") == queue:
            return alert["state"]
    return "inactive"


def _alertmanager_state(stack: LocalStack, queue: str) -> str:
    for alert in requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5).json():
        if alert["labels"].get("alertname") == ALERT and alert["labels"].get("queue_name") == queue:
            return "firing" if alert["status"]["state"] in ("active", "suppressed") else alert["status"]["state"]
    return "resolved"


def _follow(stack: LocalStack, queue: str, status: str, since: float, timeout: float) -> dict[str, float]:
    """Seconds after `since` at which each hop first showed `status`: Prometheus' rule, Alertmanager,
    the receiver. Polled every 0.1 s; 'delivered' is the receiver's own arrival time."""
    hops: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    prom_wanted = ("pending", "firing") if status == "firing" else ("inactive",)
    while time.monotonic() < deadline:
        now = time.time() - since
        if "prometheus" not in hops and _prometheus_state(stack, queue) in prom_wanted:
            hops["prometheus"] = now
        if status == "firing" and "prometheus firing" not in hops and _prometheus_state(stack, queue) == "firing":
            hops["prometheus firing"] = now
        if "alertmanager" not in hops and _alertmanager_state(stack, queue) == status:
            hops["alertmanager"] = now
        arrived = _notification(stack, queue, status, since)
        if arrived is not None:
            hops["delivered"] = arrived - since
            return hops
        time.sleep(0.1)
    raise TimeoutError(f"no {status} {ALERT} for {queue} within {timeout}s; seen so far: {hops}")


def measure(stack: LocalStack, queue: str, timeout: float = 90) -> Round:
    app = _app(stack)
    client = stack.redis.client()
    try:
        publish(app, queue, THRESHOLD)
        query = f'celery_queue_length{{queue_name="{queue}"}} == {THRESHOLD}'
        wait_until(lambda: stack.query(query), 30, f"Prometheus to see {THRESHOLD} tasks in {queue}")
        time.sleep(promql.seconds(stack.interval) * 2)  # two more evaluations at exactly the threshold
        assert _notification(stack, queue, "firing", 0) is None, f"{ALERT} fired at {THRESHOLD} tasks"

        publish(app, queue, 1)  # the 1001st
        t0 = time.time()
        fired = _follow(stack, queue, "firing", t0, timeout)

        assert client.rpop(queue) is not None  # a consumer takes one: back at the threshold
        t1 = time.time()
        resolved = _follow(stack, queue, "resolved", t1, timeout)
    finally:
        client.close()
        app.close()
    return Round(queue, fired["delivered"], resolved["delivered"], fired, resolved)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def table(rounds: list[Round], floors: Floors) -> str:
    head = ["round", "firing (s)", "floor", "target", "resolved (s)", "floor", "target"]
    rows = [
        [r.queue, f"{r.fire_s:.1f}", f"{floors.fire:.0f}", f"{floors.fire + TARGET_MARGIN_S:.0f}",
         f"{r.resolve_s:.1f}", f"{floors.resolve:.0f}", f"{floors.resolve + TARGET_MARGIN_S:.0f}"]
        for r in rounds
    ]  # fmt: skip
    fires, resolves = [r.fire_s for r in rounds], [r.resolve_s for r in rounds]
    for name, f in (("min", min), ("median", statistics.median), ("max", max)):
        rows.append([name, f"{f(fires):.1f}", "", "", f"{f(resolves):.1f}", "", ""])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join(_row(row, widths) for row in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus.bench.alert_latency", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", default="1s", help="scrape and evaluation interval (default %(default)s)")
    parser.add_argument("--for", dest="alert_for", default="5s", help="every alert's for: (default %(default)s)")
    parser.add_argument("--group-wait", default="1s")
    parser.add_argument("--group-interval", default="2s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alert-latency-") as tmp:
        stack = LocalStack(Path(tmp), alert_for=args.alert_for, interval=args.interval)
        stack.timings.update(group_wait=args.group_wait, group_interval=args.group_interval)
        stack.start()
        try:
            floors = Floors.of(stack)
            rounds = []
            for i in range(args.rounds):
                rounds.append(measure(stack, f"bench{i}"))
                print(f"round {i}: {rounds[-1].hops()}", flush=True)
        except BaseException:
            print(stack.diagnostics(), file=sys.stderr)
            raise
        finally:
            stack.stop()
    print(
        f"\nscrape = evaluation interval {args.interval}, for {args.alert_for}, group_wait {args.group_wait}, "
        f"group_interval {args.group_interval}; floor: firing {floors.fire:g}s, resolved {floors.resolve:g}s\n"
    )
    print(table(rounds, floors))
    late = [
        r for r in rounds if r.fire_s > floors.fire + TARGET_MARGIN_S or r.resolve_s > floors.resolve + TARGET_MARGIN_S
    ]
    print(f"\n{len(rounds) - len(late)}/{len(rounds)} rounds within floor + {TARGET_MARGIN_S:g}s")
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
