#!/usr/bin/env python3
"""Benchmark: scrape time of celery-queue-exporter vs the client-bound floor vs redis_exporter.

Seeds a throwaway redis-server (never the machine's shared one) with N queues x 4 priority lists
in kombu's exact layout (real Celery protocol-2 messages, bindings, unacked hash and index), then
for each N prints the median and p90 scrape time of:
  - the exporter (/metrics over HTTP, end to end), with 1 message per list, with a backlog of
    --backlog messages, and with --unacked unacked entries on top (first scrape and steady state);
  - the floor: one pipelined LLEN of every list from a bare redis-py (hiredis) client;
  - prometheus-redis-exporter --check-keys (Debian's redis_exporter), same data, same run;
and the Redis round trips per exporter scrape. `--memory-scrapes` measures the exporter's RSS
across that many scrapes instead.

    .venv/bin/python exporter/bench/bench.py                      # full run (takes a while)
    .venv/bin/python exporter/bench/bench.py --sizes 10,100 --backlog 10000 --unacked 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import redis

# The process helpers are the repository's (native/processes.py, shared with the tests): run as a
# script, this file sees only its own folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from native.processes import VENV_BIN, Proc, RedisServer, free_port, tool, wait_http

SEP = "\x06\x16"
STEPS = (0, 3, 6, 9)
HERE = Path(__file__).resolve().parent


def template_message(workdir: Path) -> str:
    """One message exactly as Celery 5 / kombu publish it, taken from a scratch redis-server."""
    from celery import Celery

    server = RedisServer(workdir).start()
    port = server.port
    try:
        client = server.client()
        app = Celery("bench", broker=f"redis://127.0.0.1:{port}/0", set_as_current=False)
        app.send_task(
            "proj.tasks.process_order",
            args=[12345, "customer@example.com"],
            kwargs={"priority": "normal", "retries": 3},
            queue="TEMPLATEQ",
        )
        app.close()
        return client.lindex("TEMPLATEQ", -1).decode()
    finally:
        server.stop()


class Seeder:
    def __init__(self, client: redis.Redis, template: str) -> None:
        self.client = client
        msg = json.loads(template)
        self.tag = msg["properties"]["delivery_tag"]
        self.task_id = msg["headers"]["id"]
        self.template = template.replace("TEMPLATEQ", "{queue}")
        self.counter = 0

    def message(self, queue: str) -> str:
        self.counter += 1
        tag = f"{self.counter:08x}-0000-4000-8000-{uuid.uuid4().hex[:12]}"
        return self.template.replace(self.tag, tag).replace(self.task_id, tag).replace("{queue}", queue)

    def queues(self, n: int) -> list[str]:
        return [f"queue{i:05d}" for i in range(n)]

    def seed_layout(self, n: int, per_list: int) -> None:
        client = self.client
        client.flushdb()
        pipe = client.pipeline(transaction=False)
        for i, q in enumerate(self.queues(n)):
            member = f"{q}{SEP}{SEP}{q}"
            pipe.sadd(f"_kombu.binding.{q}", member)
            pipe.sadd(f"_kombu.binding_permanent.{q}", member)
            for step in STEPS:
                key = q if step == 0 else f"{q}{SEP}{step}"
                pipe.lpush(key, *[self.message(q) for _ in range(per_list)])
            if i % 500 == 499:
                pipe.execute()
        # Celery's own plumbing, which the exporter must skip
        pipe.sadd("_kombu.binding.celery.pidbox", f"{SEP}{SEP}worker1@host.celery.pidbox")
        pipe.sadd("_kombu.binding.celeryev", f"worker.#{SEP}{SEP}celeryev.abc")
        pipe.execute()

    def add_backlog(self, n: int, total: int) -> None:
        """LPUSH (at the head, as producers do) until the lists hold `total` messages in all."""
        keys = [q if step == 0 else f"{q}{SEP}{step}" for q in self.queues(n) for step in STEPS]
        have = sum(self._llen_all(keys))
        missing = max(total - have, 0)
        per_key, extra = divmod(missing, len(keys))
        pipe = self.client.pipeline(transaction=False)
        batch = 0
        for i, key in enumerate(keys):
            count = per_key + (1 if i < extra else 0)
            q = key.split(SEP)[0]
            while count:
                chunk = min(count, 1000)
                pipe.lpush(key, *[self.message(q) for _ in range(chunk)])
                count -= chunk
                batch += chunk
                if batch >= 20000:
                    pipe.execute()
                    batch = 0
        pipe.execute()

    def add_unacked(self, n: int, count: int) -> None:
        queues = self.queues(n)
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        for i in range(count):
            q = queues[i % n]
            raw = self.message(q)
            tag = json.loads(raw)["properties"]["delivery_tag"]
            pipe.hset("unacked", tag, json.dumps([json.loads(raw), q, q]))
            pipe.zadd("unacked_index", {tag: now - 3600 + i * 0.01})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def _llen_all(self, keys: list[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return pipe.execute()


def timed_get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
    return time.perf_counter() - started, body


def stats(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p90 * 1000


def measure(fn, repeats: int, budget: float) -> tuple[float, float, int]:
    """Median and p90 ms of fn() (which returns the seconds it timed) over `repeats` runs (fewer
    if they would exceed `budget` s)."""
    fn()  # warm-up
    times: list[float] = []
    deadline = time.monotonic() + budget
    while len(times) < repeats and (len(times) < 3 or time.monotonic() < deadline):
        times.append(fn())
    median, p90 = stats(times)
    return median, p90, len(times)


def measure_interleaved(fns: dict, repeats: int, budget: float, windows: dict | None = None) -> dict:
    """Like measure(), taking turns between the functions so that they share the same load.
    `windows` gets the (start, end) monotonic times of each call, for the latency probe."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.monotonic() + budget * len(fns)
    rounds = 0
    while rounds < repeats and (rounds < 3 or time.monotonic() < deadline):
        for name, fn in fns.items():
            started = time.monotonic()
            times[name].append(fn())
            if windows is not None:
                windows.setdefault(name, []).append((started, time.monotonic()))
        rounds += 1
    return {name: (*stats(t), len(t)) for name, t in times.items()}


def floor_fn(client: redis.Redis, keys: list[str]):
    def run() -> float:
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        pipe.execute()
        return time.perf_counter() - started

    return run


def exporter_fn(url: str, check_total: int | None = None, before=None):
    """GET /metrics timed; the total check (and `before`, e.g. changing every list) untimed."""

    def run() -> float:
        if before is not None:
            before()
        elapsed, body = timed_get(url)
        if check_total is not None:
            total = sum(float(v) for v in re.findall(rb"^celery_queue_length\{[^}]*\} (\S+)$", body, re.M))
            if int(total) != check_total:
                raise SystemExit(f"bench: the exporter reported {total} ready messages, expected {check_total}")
        return elapsed

    return run


def round_trips(url: str) -> int:
    _, body = timed_get(url)
    match = re.search(rb"^celery_exporter_redis_round_trips (\S+)$", body, re.M)
    return int(float(match.group(1))) if match else -1


PROBE_KEY = "bench:probe"
PLAIN_USER, PLAIN_PASSWORD = "benchplain", "bench-Pa55"
EXPORTER_CLIENT, FLOOR_CLIENT = "celery-queue-exporter", "bench-floor"


def probe_loop(port: int, out_path: str) -> None:
    """A producer and a worker in one: LPUSH then RPOP, every millisecond, each pair's latency
    written as `start(monotonic) microseconds` (run as a subprocess: its own GIL)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client = redis.Redis(port=port, client_name="bench-probe")
    with open(out_path, "w", buffering=1) as out:  # line-buffered: read while it runs
        while True:
            started = time.monotonic()
            client.lpush(PROBE_KEY, "x")
            client.rpop(PROBE_KEY)
            out.write(f"{started:.6f} {(time.monotonic() - started) * 1e6:.0f}\n")
            time.sleep(0.001)


def probe_latency(path: Path, windows: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Max and p99 ms of the probe's LPUSH+RPOP pairs begun inside `windows`."""
    spans = sorted(windows)
    lat = []
    for line in path.read_text().splitlines():
        started, micros = line.split()
        t = float(started)
        if any(a <= t <= b for a, b in spans):
            lat.append(int(micros) / 1000)
    if not lat:
        return None
    lat.sort()
    return lat[-1], lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]


def longest_command(admin: redis.Redis, fn, client_name: str, runs: int = 3) -> tuple[float, float, str]:
    """The longest single command `client_name` sent during `runs` calls of fn(): (max ms, 99.9th
    percentile ms, name of the longest), from SLOWLOG with slowlog-log-slower-than 0 (which slows
    Redis: never on while timing). SLOWLOG times wall clock: on a loaded machine even an O(1) LLEN
    may show a millisecond or more when redis-server is descheduled; the percentile and the floor's
    own column show that noise."""
    admin.config_set("slowlog-max-len", 1_000_000)
    admin.config_set("slowlog-log-slower-than", 0)
    admin.slowlog_reset()
    try:
        for _ in range(runs):
            fn()
        entries = admin.slowlog_get(1_000_000)
    finally:
        admin.config_set("slowlog-log-slower-than", 10000)
        admin.slowlog_reset()
    name = client_name.encode()
    mine = sorted((e for e in entries if e.get("client_name") in (name, client_name)), key=lambda e: e["duration"])
    if not mine:
        return 0.0, 0.0, "-"
    top = mine[-1]
    p999 = mine[min(len(mine) - 1, round(0.999 * (len(mine) - 1)))]["duration"]
    command = top["command"].split()[0].decode(errors="replace") if top["command"] else "?"
    return top["duration"] / 1000, p999 / 1000, command


def churn_fn(client: redis.Redis, keys: list[str], seeder: Seeder):
    """Every list's tail leaves and a new message arrives: the worst case for the exporter's cache."""

    def run() -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.rpop(key)
            pipe.lpush(key, seeder.message(key.split(SEP)[0]))
        pipe.execute()

    return run


def start_exporter(redis_url: str, workdir: Path, extra: list[str] = ()) -> tuple[Proc, str]:
    port = free_port()
    argv = [
        str(VENV_BIN / "celery-queue-exporter"),
        "--broker-url",
        redis_url,
        "--port",
        str(port),
        "--max-queues",
        "100000",
        "--consumers-interval",
        "0",
        "--redis-timeout",
        "30",
        *extra,
    ]
    child = Proc(f"exporter-{port}", argv, workdir)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url, timeout=120)
    return child, url


def start_redis_exporter(redis_port: int, workdir: Path) -> tuple[Proc, str] | None:
    # `make bench` unpacks Debian's package into .tools/bin (see native/install-tools.sh --bench)
    binary = shutil.which(tool("prometheus-redis-exporter"))
    if binary is None:
        return None
    port = free_port()
    argv = [
        binary,
        f"--redis.addr=redis://127.0.0.1:{redis_port}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--check-keys=db0=queue*",
    ]
    child = Proc(f"redis-exporter-{port}", argv, workdir)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url, timeout=60)
    return child, url


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, redis-server {redis_version.removeprefix('v=')}"
    )


def fmt(median_p90: tuple[float, float, int] | None) -> str:
    if median_p90 is None:
        return "n/a"
    median, p90, _ = median_p90
    return f"{median:.1f} / {p90:.1f}"


def start_redis(workdir: Path, socket_timeout: float) -> tuple[RedisServer, int, redis.Redis]:
    """A throwaway redis-server on 127.0.0.1 and a free port, and a client once it answers."""
    server = RedisServer(workdir).start()
    return server, server.port, server.client(socket_timeout=socket_timeout)


def fmt_probe(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.1f} / {value[1]:.1f}"


def run_sizes(args: argparse.Namespace, workdir: Path) -> None:
    server, port, shallow_client = start_redis(workdir, socket_timeout=300)
    template = template_message(workdir)
    deep_client = redis.Redis(port=port, db=1, socket_timeout=300)
    floor_client = redis.Redis(port=port, db=0, socket_timeout=300, client_name=FLOOR_CLIENT)
    floor_deep_client = redis.Redis(port=port, db=1, socket_timeout=300, client_name=FLOOR_CLIENT)
    shallow_seeder, deep_seeder = Seeder(shallow_client, template), Seeder(deep_client, template)
    shallow_url, deep_url = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    plain_url = f"redis://{PLAIN_USER}:{PLAIN_PASSWORD}@127.0.0.1:{port}/0"
    plain_rules = ["on", f">{PLAIN_PASSWORD}", "~*", "resetchannels", "-@all", "+@read", "+@connection"]
    shallow_client.execute_command("ACL", "SETUSER", PLAIN_USER, *plain_rules)
    probe_path = workdir / "probe.txt"
    probe = Proc("probe", [sys.executable, __file__, "--probe", str(port), str(probe_path)], workdir)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(
        f"message: {len(shallow_seeder.message('queue00000'))} bytes (Celery 5 protocol 2, as published); "
        f"backlog {args.backlog:,} messages, {args.unacked:,} unacked entries"
    )
    print()
    header = (
        "| N queues (x4 lists) | exporter, 1 msg/list (scripts mode) | same, plain read-only user "
        "| same, --message-age false | same, every list changed since the last scrape | exporter, backlog "
        "| exporter, backlog + unacked (steady) | first scrape with new unacked | floor: pipelined LLEN "
        "| floor, backlog | redis_exporter --check-keys "
        "| longest Redis command, max / 99.9th percentile (SLOWLOG): exporter scripts; plain; churn; floor "
        "| producer LPUSH+RPOP max / p99: idle; during exporter; during floor "
        "| round trips / scrape: without, with unacked |"
    )
    print(header)
    print("|---:" * (header.count("|") - 1) + "|")
    try:
        for n in args.sizes:
            # Same N in two databases of one server: db 0 with 1 message per list, db 1 with the
            # backlog. Measurements are interleaved, so both see the same machine load.
            keys = [q if s == 0 else f"{q}{SEP}{s}" for q in shallow_seeder.queues(n) for s in STEPS]
            shallow_seeder.seed_layout(n, per_list=1)
            deep_seeder.seed_layout(n, per_list=1)
            deep_seeder.add_backlog(n, args.backlog)
            children = []
            try:
                exporter, url = start_exporter(shallow_url, workdir)
                children.append(exporter)
                plain_exporter, plain_metrics = start_exporter(plain_url, workdir)
                children.append(plain_exporter)
                no_age_exporter, no_age_url = start_exporter(shallow_url, workdir, ["--message-age", "false"])
                children.append(no_age_exporter)
                deep_exporter, deep_url_metrics = start_exporter(deep_url, workdir)
                children.append(deep_exporter)
                idle_from = time.monotonic()
                time.sleep(3)
                idle = probe_latency(probe_path, [(idle_from, time.monotonic())])
                windows: dict[str, list[tuple[float, float]]] = {}
                functions = {
                    "shallow": exporter_fn(url, check_total=len(keys)),
                    "plain": exporter_fn(plain_metrics, check_total=len(keys)),
                    "no_age": exporter_fn(no_age_url, check_total=len(keys)),
                    "deep": exporter_fn(deep_url_metrics, check_total=max(args.backlog, len(keys))),
                    "floor": floor_fn(floor_client, keys),
                    "floor_deep": floor_fn(floor_deep_client, keys),
                }
                results = measure_interleaved(functions, args.repeats, args.budget, windows)
                exporter_windows = windows["shallow"] + windows["plain"] + windows["deep"]
                during_exporter = probe_latency(probe_path, exporter_windows)
                during_floor = probe_latency(probe_path, windows["floor"] + windows["floor_deep"])
                churn = churn_fn(shallow_client, keys, shallow_seeder)
                churned = measure(exporter_fn(url, check_total=len(keys), before=churn), args.repeats, args.budget)
                longest = [
                    longest_command(shallow_client, functions["shallow"], EXPORTER_CLIENT),
                    longest_command(shallow_client, functions["plain"], EXPORTER_CLIENT),
                    longest_command(shallow_client, exporter_fn(url, before=churn), EXPORTER_CLIENT),
                    longest_command(shallow_client, functions["floor"], FLOOR_CLIENT),
                ]
                rx = start_redis_exporter(port, workdir)
                redis_exp = None
                if rx is not None:
                    try:
                        redis_exp = measure(exporter_fn(rx[1]), args.repeats, args.budget)
                    finally:
                        rx[0].stop()
                trips_no_unacked = round_trips(deep_url_metrics)
                deep_seeder.add_unacked(n, args.unacked)
                first, _ = timed_get(deep_url_metrics)
                with_unacked = measure(exporter_fn(deep_url_metrics), args.repeats, args.budget)
                trips = round_trips(deep_url_metrics)
            finally:
                for child in children:
                    child.stop()
            commands = "; ".join(f"{ms:.2f} / {p999:.2f} ({name})" for ms, p999, name in longest)
            print(
                f"| {n:,} | {fmt(results['shallow'])} | {fmt(results['plain'])} | {fmt(results['no_age'])} "
                f"| {fmt(churned)} | {fmt(results['deep'])} "
                f"| {fmt(with_unacked)} | {first * 1000:.0f} | {fmt(results['floor'])} | {fmt(results['floor_deep'])} "
                f"| {fmt(redis_exp)} | {commands} "
                f"| {fmt_probe(idle)}; {fmt_probe(during_exporter)}; {fmt_probe(during_floor)} "
                f"| {trips_no_unacked}, {trips} |",
                flush=True,
            )
            shallow_client.flushdb()
            deep_client.flushdb()
        huge(shallow_client, port, workdir)
    finally:
        probe.stop()
        server.stop()
    print()
    print(
        "Times in ms, median / p90 of end-to-end HTTP GET /metrics (floor: in-process pipeline; churn: "
        "untimed RPOP+LPUSH of every list before each timed scrape). Longest command: ms (the name of the "
        "longest). "
        f"Load average {os.getloadavg()[0]:.1f} at the end."
    )
    print(
        f"bench: {' '.join(sys.argv[1:]) or '(defaults)'}; "
        f"finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def huge(client: redis.Redis, port: int, workdir: Path) -> None:
    """A 27 MB message at a list tail: how long the exporter's read of it holds Redis, against
    Redis copying it once for a plain LINDEX from another client."""
    client.flushdb()
    client.sadd("_kombu.binding.huge", f"huge{SEP}{SEP}huge")
    big = json.dumps({"body": "x" * 27_000_000, "properties": {"delivery_tag": "huge-1"}})
    client.lpush("huge", big)
    exporter, url = start_exporter(f"redis://127.0.0.1:{port}/0", workdir, ["--redis-timeout", "30"])
    try:
        client.lpush("huge", "{}")  # a change at the head: the tail is read again (invalidation)
        took, _, name = longest_command(client, exporter_fn(url), EXPORTER_CLIENT, runs=1)
        copy = redis.Redis(port=port, client_name="bench-copy")
        once, _, _ = longest_command(client, lambda: copy.lindex("huge", -1), "bench-copy", runs=1)
    finally:
        exporter.stop()
        client.flushdb()
    print()
    print(
        f"27 MB message at a list tail: the exporter's longest command {took:.1f} ms ({name}); "
        f"the same LINDEX from another client (one copy) {once:.1f} ms"
    )


def run_memory(args: argparse.Namespace, workdir: Path) -> None:
    server, port, client = start_redis(workdir, socket_timeout=60)
    seeder = Seeder(client, template_message(workdir))
    n = args.memory_queues
    seeder.seed_layout(n, per_list=5)
    exporter, url = start_exporter(f"redis://127.0.0.1:{port}/0", workdir)
    print(f"machine: {machine()}")
    print(
        f"memory: {args.memory_scrapes:,} scrapes of {n} queues, tails and unacked entries changing "
        "between scrapes (new delivery tags every scrape)"
    )
    print("| scrapes | exporter RSS (MiB) |")
    print("|---:|---:|")
    try:
        queues = seeder.queues(n)
        for i in range(args.memory_scrapes + 1):
            if i % max(args.memory_scrapes // 10, 1) == 0:
                print(f"| {i:,} | {exporter.rss_kib() / 1024:.1f} |", flush=True)
            # churn: a message leaves every list tail and a new one arrives; unacked entries come and go
            q = queues[i % n]
            pipe = client.pipeline(transaction=False)
            pipe.rpop(q)
            pipe.lpush(q, seeder.message(q))
            raw = seeder.message(q)
            tag = json.loads(raw)["properties"]["delivery_tag"]
            pipe.hset("unacked", tag, json.dumps([json.loads(raw), q, q]))
            pipe.zadd("unacked_index", {tag: time.time()})
            if i >= 50:
                old = client.zrange("unacked_index", 0, 0)
                if old:
                    pipe.zrem("unacked_index", old[0])
                    pipe.hdel("unacked", old[0])
            pipe.execute()
            timed_get(url)
    finally:
        exporter.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000", help="queue counts N (comma-separated)")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="messages waiting in all, per N")
    parser.add_argument("--unacked", type=int, default=100_000, help="unacked entries, per N")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per measurement at most (min 3 runs)")
    parser.add_argument("--memory-scrapes", type=int, default=0, help="instead: RSS across this many scrapes")
    parser.add_argument("--memory-queues", type=int, default=100)
    parser.add_argument("--probe", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_loop(int(args.probe[0]), args.probe[1])
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="celery-exporter-bench-") as tmp:
        if args.memory_scrapes:
            run_memory(args, Path(tmp))
        else:
            run_sizes(args, Path(tmp))


if __name__ == "__main__":
    main()
