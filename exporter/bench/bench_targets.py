#!/usr/bin/env python3
"""Benchmark: one exporter probing B brokers (/probe?target=NAME) against B exporters, one per broker.

Starts B throwaway redis-servers (never the machine's shared one), seeds each with N queues x 4
priority lists in kombu's layout (1 message per list, as bench.py does), then for each setup prints
the median / p90 time of one target's scrape, the time to scrape all B targets one after the other
and all at once (B concurrent requests, as Prometheus scrapes them in parallel), and the total
resident memory of the exporter processes. Each setup runs with the consumers reading off and on
(--consumers-interval 30: a Celery app and an inspect thread per target).

    .venv/bin/python exporter/bench/bench_targets.py                  # 20 brokers x 100 queues
    .venv/bin/python exporter/bench/bench_targets.py --brokers 5 --queues 10 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench.py's seeding and timing, and the repository's process helpers (native/processes.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import STEPS, Seeder, machine, stats, template_message, timed_get

from native.processes import VENV_BIN, Proc, RedisServer, free_port, wait_http


def exporter_argv(port: int, extra: list[str]) -> list[str]:
    return [str(VENV_BIN / "celery-queue-exporter"), "--port", str(port), *extra]


def start(argv: list[str], workdir: Path, url: str) -> Proc:
    child = Proc(f"exporter-{argv[2]}", argv, workdir)
    wait_http(url, timeout=120)
    return child


def one_for_all(servers: list[RedisServer], workdir: Path, consumers: float) -> tuple[list[Proc], list[str]]:
    """One exporter, B targets in its config file; /metrics reads no broker."""
    lines = ['broker_url: ""', "targets:"]
    for i, server in enumerate(servers):
        lines.append(
            f'  broker{i:02d}: {{broker_url: "{server.url}", consumers_interval: {consumers}, max_queues: 100000}}'
        )
    config = workdir / f"targets-{consumers}.yml"
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    child = start(exporter_argv(port, ["--config", str(config)]), workdir, f"http://127.0.0.1:{port}/metrics")
    return [child], [f"http://127.0.0.1:{port}/probe?target=broker{i:02d}" for i in range(len(servers))]


def one_per_broker(servers: list[RedisServer], workdir: Path, consumers: float) -> tuple[list[Proc], list[str]]:
    children, urls = [], []
    for server in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        extra = ["--broker-url", server.url, "--consumers-interval", str(consumers), "--max-queues", "100000"]
        children.append(start(exporter_argv(port, extra), workdir, url))
        urls.append(url)
    return children, urls


def check(body: bytes, queues: int) -> None:
    lists = body.count(b"\ncelery_queue_priority_length{")
    if lists != queues * len(STEPS):
        raise SystemExit(f"bench: a scrape reported {lists} priority lists, expected {queues * len(STEPS)}")


def run_setup(
    name: str,
    setup: Callable[[list[RedisServer], Path, float], tuple[list[Proc], list[str]]],
    servers: list[RedisServer],
    workdir: Path,
    args: argparse.Namespace,
    consumers: float,
) -> str:
    children, urls = setup(servers, workdir, consumers)
    try:
        for url in urls:  # warm-up: first discovery of every broker
            check(timed_get(url)[1], args.queues)
        if consumers:
            time.sleep(args.consumers_settle)  # every consumers thread has made its first reading
        singles: list[float] = []
        sequential: list[float] = []
        concurrent: list[float] = []
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            for _ in range(args.repeats):
                started = time.perf_counter()
                for url in urls:
                    took, body = timed_get(url)
                    singles.append(took)
                sequential.append(time.perf_counter() - started)
                check(body, args.queues)
                started = time.perf_counter()
                for _took, body in pool.map(timed_get, urls):
                    check(body, args.queues)
                concurrent.append(time.perf_counter() - started)
        rss = sum(child.rss_kib() for child in children) / 1024
        one, seq, conc = stats(singles), stats(sequential), stats(concurrent)
        return (
            f"| {name} | {'on' if consumers else 'off'} | {len(children)} | {one[0]:.1f} / {one[1]:.1f} "
            f"| {seq[0]:.0f} / {seq[1]:.0f} | {conc[0]:.0f} / {conc[1]:.0f} | {rss:.0f} |"
        )
    finally:
        for child in children:
            child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", type=int, default=20, help="brokers (redis-servers)")
    parser.add_argument("--queues", type=int, default=100, help="queues per broker (x4 priority lists)")
    parser.add_argument("--repeats", type=int, default=20, help="rounds of scraping all targets")
    parser.add_argument("--consumers-settle", type=float, default=3.0, help="seconds for the first inspect readings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="celery-exporter-bench-targets-") as tmp:
        workdir = Path(tmp)
        template = template_message(workdir)
        servers: list[RedisServer] = []
        try:
            for i in range(args.brokers):
                server = RedisServer(workdir / f"redis{i}").start()
                servers.append(server)
                Seeder(server.client(socket_timeout=60), template).seed_layout(args.queues, per_list=1)
            print(f"machine: {machine()}")
            print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"{args.brokers} brokers x {args.queues} queues x {len(STEPS)} lists, 1 message per list")
            print()
            header = (
                "| setup | consumers reading | exporter processes | one target's scrape (ms) "
                f"| all {args.brokers} one after the other (ms) | all {args.brokers} at once (ms) "
                "| exporters' total RSS (MiB) |"
            )
            print(header)
            print("|---|---|---:|---:|---:|---:|---:|")
            for consumers in (0.0, 30.0):
                for name, setup in (
                    (f"one exporter, {args.brokers} targets on /probe", one_for_all),
                    (f"{args.brokers} exporters, one broker each", one_per_broker),
                ):
                    print(run_setup(name, setup, servers, workdir, args, consumers), flush=True)
        finally:
            for server in servers:
                server.stop()
    print()
    print("Times: median / p90 of end-to-end HTTP GETs, over --repeats rounds.")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"bench_targets: {' '.join(sys.argv[1:]) or '(defaults)'}; "
        f"finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


if __name__ == "__main__":
    main()
