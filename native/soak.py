"""make soak: the highly available stack under a steady load, then a verdict.

`python -m native.soak [--minutes 30] [--profile production]` starts what `HA=1 make up` starts
(the rows of native/components.py: Redis, worker, beat, Flower, exporter, receiver, two
Prometheus replicas, two clustered Alertmanagers) under supervisord, on free ports of 127.0.0.1
and in its own folder (run/soak/), so it runs beside a stack of `make up`. It publishes the
load of native/soak_load.py for the given minutes, printing progress every minute, then checks
(native/soak_report.py) and exits 1 unless: the receiver got 0 notifications, every target was
scraped by both replicas with 0 failed scrapes, no rule evaluation failed, no component restarted,
and every component's memory was measured at start and end (printed). It stops supervisord and
every process it started by their ids, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import yaml

from native import soak_load, soak_report, stack
from native.processes import free_port, rss_kib
from native.settings import REPO, TOOLS_BIN, Settings
from native.soak_report import Memory
from native.supervisor_client import Supervisor
from workers.load import Parser  # one clear error line, exit 2

PROG = "python -m native.soak"
DEFAULT_RUN_DIR = REPO / "run" / "soak"
MARKER = "soak.json"  # what makes a folder the soak's own, to be wiped by the next run
PROGRESS_EVERY_S = 60


def _minutes(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of minutes") from None
    if not 0 < value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{raw!r} must be more than 0 and at most 1440 minutes")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=_minutes, default=30.0, help="how long the load runs (default 30)")
    p.add_argument(
        "--profile",
        choices=("production", "demo"),
        default="production",
        help="alert rules: production (what users get, the default) or demo (the same thresholds, short for:)",
    )
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help=f"state and logs (default {DEFAULT_RUN_DIR})")
    return p.parse_args(argv)


def settings(run_dir: Path, profile: str) -> Settings:
    """The HA stack of `make up` on free ports, with its own Redis."""
    return Settings(
        run_dir=run_dir,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        flower_port=free_port(),
        exporter_port=free_port(),
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        receiver_port=free_port(),
        alert_profile=profile,
        ha=True,
        prometheus_b_port=free_port(),
        alertmanager_b_port=free_port(),
        alertmanager_cluster_port=free_port(),
        alertmanager_b_cluster_port=free_port(),
    )


def fresh_run_dir(run_dir: Path) -> str | None:
    """Empty `run_dir` for this run; an error message if it holds something not ours."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / MARKER).exists():
            return f"{run_dir} exists and is not a soak's folder (no {MARKER}): choose another --run-dir"
        if Supervisor(run_dir / "supervisor.sock").running():
            return f"a soak is still running in {run_dir}"
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- what runs ----------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a prefork worker's pool, Flower's or beat's children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def measure(s: Settings) -> dict[str, tuple[int, int, float]]:
    """Program name -> (resident KiB of its process tree, processes, start time) of every
    running program of the stack."""
    out = {}
    for name, info in stack.supervisor(s).processes().items():
        if info["statename"] != "RUNNING" or not info["pid"]:
            continue
        total, count = 0, 0
        for pid in _tree(info["pid"]):
            try:
                total += rss_kib(pid)
                count += 1
            except (OSError, LookupError):  # gone meanwhile, or a zombie
                pass
        out[name] = (total, count, float(info["start"]))
    return out


def progress(s: Settings, started: float, published: Counter[str]) -> str:
    now = time.time()
    prom = s.url("prometheus")
    try:
        queues = soak_report.query(prom, "max_over_time(sum by (queue_name) (celery_queue_length)[1m:15s])", now)
        deepest = max(
            ((float(q["value"][1]), q["metric"]["queue_name"]) for q in queues["data"]["result"]),
            default=(0.0, ""),
        )
        alerts = soak_report.alert_names(soak_report.query(prom, "ALERTS", now))
        down = soak_report.scalar_sum(soak_report.query(prom, "count(up == 0) or vector(0)", now))
        received = len(soak_report.query_received(s.url("receiver")))
        queue = f"{deepest[1]} {deepest[0]:.0f}" if deepest[0] else "all empty"
    except (OSError, ValueError, KeyError) as exc:
        return f"{(now - started) / 60:5.1f} min  could not ask the stack: {exc}"
    return (
        f"{(now - started) / 60:5.1f} min  published {sum(published.values())}  deepest queue (1 min) "
        f"{queue}  targets down {down:.0f}  alerts {', '.join(alerts) or 'none'}  "
        f"notifications {received}"
    )


def expected_targets(s: Settings) -> dict[str, set[tuple[str, str]]]:
    """Replica name -> the (job, instance) it must scrape: every component that has a job."""
    targets = {(c.job, f"127.0.0.1:{c.port}") for c in stack.table(s).values() if c.job}
    return {name: set(targets) for name, c in stack.table(s).items() if c.kind == "prometheus"}


# What the load did, as Prometheus saw it: (heading, PromQL over the window `W`, label shown)
LOAD_QUERIES = (
    (
        "tasks run",
        'sum by (task, type) (increase(flower_events_total{type=~"task-(succeeded|failed|retried)"}[W]))',
        ("task", "type"),
    ),
    (
        "highest failure ratio over 5 min (alert: > 0.1)",
        "max_over_time(task:flower_task_failures:ratio_rate5m[W])",
        ("task",),
    ),
    ("deepest queue (alert: > 1000)", "max by (queue_name) (max_over_time(celery_queue_length[W]))", ("queue_name",)),
    (
        "oldest waiting task, seconds (alert: > 300)",
        "max by (queue_name) (max_over_time(celery_queue_oldest_message_age_seconds[W]))",
        ("queue_name",),
    ),
)


def load_seen(prometheus_url: str, window: tuple[float, float]) -> list[str]:
    start, end = window
    lines = []
    for heading, promql, shown in LOAD_QUERIES:
        answer = soak_report.query(prometheus_url, promql.replace("[W]", f"[{max(1, int(end - start))}s]"), end)
        values = sorted(
            (" ".join(r["metric"].get(k, "") for k in shown), float(r["value"][1])) for r in answer["data"]["result"]
        )
        lines.append(f"{heading}: " + ", ".join(f"{k} {v:.3g}" for k, v in values if v))
    return lines


def verdict(s: Settings, window: tuple[float, float], memory: list[Memory], restarts: list[str]) -> int:
    start, end = window
    comps = stack.table(s)
    replicas = [name for name, c in comps.items() if c.kind == "prometheus"]
    interval = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    interval_s = float(interval.removesuffix("s"))  # prometheus.yml gives it in seconds
    scrapes, rule_failures, pending = [], {}, set()
    for name in replicas:
        url = s.url(name)
        scrapes += soak_report.query_scrapes(name, url, start, end)
        window_s = f"{max(1, int(end - start))}s"
        rule_failures[name] = soak_report.scalar_sum(
            soak_report.query(url, f"sum(increase(prometheus_rule_evaluation_failures_total[{window_s}]))", end)
        )
        pending.update(soak_report.alert_names(soak_report.query(url, f"max_over_time(ALERTS[{window_s}])", end)))
    notifications = soak_report.notification_lines(soak_report.query_received(s.url("receiver")))
    min_samples = math.floor((end - start) / interval_s) - 1
    found = soak_report.problems(
        notifications, scrapes, expected_targets(s), min_samples, rule_failures, memory, restarts
    )

    print(f"\n== Verdict ({(end - start) / 60:.1f} minutes of load, alert profile {s.alert_profile})")
    print(f"notifications at the receiver: {len(notifications)}")
    for line in notifications:
        print(f"  {line}")
    total, failed = sum(t.samples for t in scrapes), sum(t.failed for t in scrapes)
    print(f"scrapes: {total} by {len(replicas)} replicas of {len(scrapes)} targets, {failed} failed")
    for t in scrapes:
        print(f"  {t.replica:<13} {t.job:<22} {t.instance:<16} {t.samples:>4} scrapes, {t.failed} failed")
    print(f"rule evaluation failures: {sum(rule_failures.values()):g}")
    print("what the load did (replica prometheus), against the thresholds of prometheus/alerting.yml:")
    for line in load_seen(s.url(replicas[0]), window):
        print(f"  {line}")
    print(f"alerts pending or firing at any time: {', '.join(sorted(pending)) or 'none'}")
    print(f"restarts: {len(restarts)}")
    print("memory (resident, each component's process tree):")
    for line in soak_report.memory_table(memory):
        print(f"  {line}")
    if found:
        print(f"\nFAILED ({len(found)}):")
        for line in found:
            print(f"  {line}")
        return 1
    print("\nPASSED: 0 notifications, 0 failed scrapes, every component measured at start and end")
    return 0


def run(args: argparse.Namespace) -> int:
    run_dir = args.run_dir.resolve()
    if not (TOOLS_BIN / "prometheus").exists() or not shutil.which("redis-server"):
        print(f"{PROG}: error: Prometheus tools or redis-server missing: run native/install-tools.sh", file=sys.stderr)
        return 1
    error = fresh_run_dir(run_dir)
    if error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    s = settings(run_dir, args.profile)
    # Only the local receiver: a soak must not page anyone through the ALERT_* channels of `make up`.
    for key in [k for k in os.environ if k.startswith("ALERT_")]:
        del os.environ[key]
    stack.prepare_run_dir(s)
    (run_dir / MARKER).write_text(json.dumps({"minutes": args.minutes, "profile": args.profile}) + "\n")
    comps = stack.table(s)
    print(f"Soak: the HA stack ({', '.join(comps)}) in {run_dir}, alert profile {s.alert_profile}")
    print(f"load for {args.minutes:g} min: {soak_load.describe()}")
    try:
        report = stack.launch(s, comps)
        stack.print_table([r for r in report if r.component in comps])
        if not all(r.healthy for r in report):
            print(f"Not every component became healthy within {stack.UP_TIMEOUT_S}s; logs: {run_dir / 'logs'}")
            return 1
        return soak(s, args.minutes)
    finally:
        if stack.supervisor(s).running():
            print("stopping the stack ...")
            stack.stop(s)
            print(f"stopped; logs and data kept in {run_dir}")


def soak(s: Settings, minutes: float) -> int:
    from workers import tasks  # noqa: F401 - registers the shared tasks with the app
    from workers.app import create_app
    from workers.config import Settings as AppSettings

    app = create_app(AppSettings.from_env(stack.layout(s).celery_env))
    before = measure(s)
    start = time.time()
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: load starts")
    published: Counter[str] = Counter()
    tick, next_progress = 0, start + PROGRESS_EVERY_S
    half: dict[str, tuple[int, int, float]] = {}  # memory at half time: growth that goes on, or levels off
    try:
        while time.time() < start + minutes * 60:
            soak_load.publish(app, tick, published)
            tick += 1
            time.sleep(max(0.0, start + tick * soak_load.TICK_S - time.time()))
            if time.time() >= next_progress:
                print(progress(s, start, published), flush=True)
                next_progress += PROGRESS_EVERY_S
            if not half and time.time() >= start + minutes * 30:
                half = measure(s)
    finally:
        app.close()
    end = time.time()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: load ends; published {soak_load.totals(published)}")
    after = measure(s)
    memory = [
        Memory(
            name,
            before.get(name, (None,))[0],
            after.get(name, (None,))[0],
            after.get(name, (0, 0))[1],
            half.get(name, (None,))[0],
        )
        for name in stack.table(s)
    ]
    restarts = [
        f"{name} (started {datetime.fromtimestamp(after[name][2], UTC):%H:%M:%S} UTC)"
        for name in before
        if name in after and after[name][2] != before[name][2]
    ]
    return verdict(s, (start, end), memory, restarts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT too: a shell starts a background job with SIGINT ignored, and Python then keeps it so
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; the stack is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
