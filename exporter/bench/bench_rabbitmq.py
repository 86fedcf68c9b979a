#!/usr/bin/env python3
"""Benchmark on RabbitMQ: the exporter vs a bare management API request vs rabbitmq_prometheus.

Starts a private RabbitMQ node (Debian's rabbitmq-server, free loopback ports, never the machine's
own) with the management and prometheus plugins, fills one vhost with N queues holding one
stamped message each, and for each N prints the median and p90 of:
  - a scrape of the exporter process: `GET /metrics` of `celery-queue-exporter` on that vhost
    (the reading, the collectors and the text exposition, over HTTP as Prometheus scrapes it);
  - the exporter's RabbitMQ reading alone: the queue list request, JSON parsing and per-queue
    columns (RabbitMQReader.read(), in process);
  - the floor: the same one request (`GET /api/queues/VHOST?columns=...`) on a kept-alive
    connection, body read but not parsed;
  - rabbitmq_prometheus' `GET /metrics/per-object` (per-queue series of every vhost), same run;
and the exporter process' resident memory after those scrapes; then how stale a value can be: the
time from publishing a message until the reading shows it, with the node's collect_statistics_interval.

    .venv/bin/python exporter/bench/bench_rabbitmq.py
    .venv/bin/python exporter/bench/bench_rabbitmq.py --sizes 10,100 --repeats 20
"""

from __future__ import annotations

import argparse
import http.client
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The repository's process helpers (native/), shared with the tests: run as a script, this file
# sees only its own folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.rabbitmq_management import ManagementClient, management_target
from celery_queue_exporter.rabbitmq_reading import COLUMNS, RabbitMQReader
from native.processes import Proc, free_port, wait_until
from native.rabbitmq_node import STATS_INTERVAL_MS, RabbitMQNode

VHOST = "bench"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Times of each function, taken in turns so that all see the same machine load."""
    for fn in fns.values():
        fn()  # warm: connections, caches
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - started) * 1000)
    return out


def fmt(ms: list[float]) -> str:
    ordered = sorted(ms)
    return f"{statistics.median(ordered):.1f} / {ordered[int(len(ordered) * 0.9) - 1]:.1f}"


def fill(node: RabbitMQNode, have: int, want: int) -> None:
    """Queues have..want-1, one stamped message each, declared and published over one connection."""
    from kombu import Connection

    with Connection(node.amqp_url(VHOST)) as conn:
        channel = conn.default_channel
        producer = conn.Producer()
        for i in range(have, want):
            name = f"queue{i:05d}"
            channel.queue_declare(name, durable=True, nowait=True)
            producer.publish({"n": i}, exchange="", routing_key=name, timestamp=int(time.time()))
        channel.queue_declare(f"queue{want - 1:05d}", durable=True, passive=True)  # a round trip: all in


def wait_listed(reader: RabbitMQReader, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = reader.read()
        if len(reading.queues) == n and all(x == 1 for x in reading.ready):
            return
        time.sleep(0.5)
    raise SystemExit(f"the management API did not show {n} queues with one message each in {timeout}s")


def staleness(node: RabbitMQNode, reader: RabbitMQReader, samples: int) -> list[float]:
    """Seconds from publishing one more message to queue00000 until the reading shows it."""
    from kombu import Connection

    out = []
    with Connection(node.amqp_url(VHOST)) as conn:
        producer = conn.Producer()
        for k in range(samples):
            want = 2 + k
            published = time.monotonic()
            producer.publish({"n": k}, exchange="", routing_key="queue00000", timestamp=int(time.time()))
            while reader.read().ready[0] != want:
                time.sleep(0.05)
            out.append(time.monotonic() - published)
            time.sleep(0.37 * (k % 3))  # publish at different phases of the sampling interval
    return out


class Exporter:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port


def start_exporter(node: RabbitMQNode, workdir: Path) -> tuple[Exporter, str]:
    """celery-queue-exporter on the bench vhost, as deployed (inspect off: no workers here)."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "celery-queue-exporter"),
        *("--address", "127.0.0.1", "--port", str(port)),
        *("--management-url", node.management_url, "--consumers-interval", "0", "--max-queues", "100000"),
    ]
    proc = Proc(f"exporter-{port}", argv, workdir, env={"CELERY_EXPORTER_BROKER_URL": node.amqp_url(VHOST)})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def answers() -> bool:
        try:
            conn.request("GET", "/metrics")
            return b"celery_broker_up 1" in conn.getresponse().read()
        except OSError:
            conn.close()
            return False

    try:
        wait_until(answers, 30, "the exporter's /metrics with celery_broker_up 1")
    except TimeoutError:
        proc.stop()
        raise SystemExit(f"the exporter did not start:\n{proc.log()}") from None
    conn.close()
    return Exporter(proc, port), "/metrics"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="queue counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=40, help="timed scrapes per column and size")
    parser.add_argument("--staleness-samples", type=int, default=8)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-rabbitmq-") as tmp:
        node = RabbitMQNode(Path(tmp), name="bench", plugins=("rabbitmq_management", "rabbitmq_prometheus"))
        node.start()
        try:
            node.add_vhost(VHOST)
            target = management_target(node.amqp_url(VHOST), node.management_url)
            reader = RabbitMQReader(ManagementClient(target, timeout=30), QueueSet((), 300, 100_000))
            floor = http.client.HTTPConnection("127.0.0.1", node.management_port, timeout=30)
            plugin = http.client.HTTPConnection("127.0.0.1", node.prometheus_port, timeout=30)
            headers = {"Authorization": reader.client._headers["Authorization"]}
            floor_path = f"{target.queues_path()}?columns={','.join(COLUMNS)}"

            def get(conn: http.client.HTTPConnection, path: str, hdrs: dict[str, str]) -> None:
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status

            exporter, metrics_path = start_exporter(node, Path(tmp))
            scrape = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=30)
            rows = []
            have = 0
            for n in sizes:
                fill(node, have, n)
                have = n
                wait_listed(reader, n)
                requests = reader.read().requests
                times = interleaved(
                    {
                        "scrape": lambda: get(scrape, metrics_path, {}),
                        "ours": reader.read,
                        "floor": lambda: get(floor, floor_path, headers),
                        "plugin": lambda: get(plugin, "/metrics/per-object", {}),
                    },
                    args.repeats,
                )
                rss = exporter.proc.rss_kib() / 1024
                ratio = statistics.median(times["scrape"]) / statistics.median(times["floor"])
                row = (fmt(times["scrape"]), fmt(times["ours"]), fmt(times["floor"]), fmt(times["plugin"]))
                rows.append((n, *row, f"{ratio:.2f}x", f"{rss:.1f}", requests))
            stale = staleness(node, RabbitMQReader(reader.client, QueueSet((), 300, 100_000)), args.staleness_samples)
            exporter.proc.stop()
        finally:
            node.stop(graceful=False)

    print(f"- machine: {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}")
    print(f"- RabbitMQ node started in {node.started_in:.1f} s (Debian's rabbitmq-server, management + prometheus)")
    print()
    print(
        "| N queues | exporter process: GET /metrics | its reading alone (request, parse, columns) "
        "| floor: the same request, not parsed | rabbitmq_prometheus /metrics/per-object "
        "| scrape / floor | exporter RSS MiB | requests / scrape |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, scraped, ours, bare, prom, ratio, rss, requests in rows:
        print(f"| {n:,} | {scraped} | {ours} | {bare} | {prom} | {ratio} | {rss} | {requests} |")
    print()
    print(
        f"Times in ms, median / p90 of {args.repeats}; finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    print(
        f"Staleness with collect_statistics_interval = {STATS_INTERVAL_MS} ms: publish to visible in the "
        f"reading, median {statistics.median(stale):.1f} s, max {max(stale):.1f} s over {len(stale)} messages."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
