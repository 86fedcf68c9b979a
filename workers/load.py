"""Publish many tasks at once: `python -m workers.load --queue backlog --count 1500`.

Without --queue each task goes where the app routes it; with --queue it goes to that queue,
declared first (binding included) so a queue nobody consumes still gets and keeps them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import KombuError
from kombu.utils.url import maybe_sanitize_url
from redis.exceptions import RedisError

from workers.config import ConfigError
from workers.progress import ProgressBar

PROG = "python -m workers.load"
BATCH = 200

# Task kind -> (task name, arguments of the i-th task)
KINDS: dict[str, tuple[str, Callable[[int, argparse.Namespace], tuple[Any, ...]]]] = {
    "add": ("workers.tasks.add", lambda i, a: (i, i)),
    "sqrt": ("workers.tasks.sqrt_task", lambda i, a: (i,)),
    "bind": ("workers.tasks.bind_task", lambda i, a: ()),
    "failing": ("workers.tasks.failing_task", lambda i, a: ()),
    # fails once, then succeeds on its first retry (same task id): a recovering task
    "retry": ("workers.tasks.failing_task", lambda i, a: (1,)),
    "ack": ("workers.tasks.ack_task", lambda i, a: (a.seconds,)),
    "no_ack": ("workers.tasks.no_ack_task", lambda i, a: (a.seconds,)),
    "log": ("workers.tasks.log_message", lambda i, a: (a.level, f"load message {i}")),
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line (no usage block), exit status 2 as argparse does.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be at least 1")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"{raw!r} must be between 0 and 10000000 seconds")
    return value


def _priority(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a priority from 0 to 9")
    return value


def _eta(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an ISO 8601 time (e.g. 2030-01-01T12:00:00+00:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _queue_name(raw: str) -> str:
    if not raw.strip() or any(c.isspace() for c in raw) or "\x06" in raw:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a usable queue name")
    return raw


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=_queue_name, help="queue to publish to (default: the app's routing)")
    p.add_argument("--count", type=_positive_int, default=1, help="how many tasks (default 1)")
    p.add_argument("--task", choices=sorted(KINDS), default="add", help="task kind (default add)")
    p.add_argument("--priority", type=_priority, help="message priority 0-9 (Redis: 0 is served first)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--countdown", type=_seconds, help="run no earlier than this many seconds from now")
    when.add_argument("--eta", type=_eta, help="run no earlier than this ISO 8601 time (UTC if no offset)")
    p.add_argument("--seconds", type=_seconds, default=1.0, help="sleep of ack/no_ack tasks (default 1)")
    p.add_argument("--level", default="info", choices=["debug", "info", "warning", "error"], help="for --task log")
    return p.parse_args(argv)


def publish(app: Celery, args: argparse.Namespace) -> tuple[int, str, float]:
    """Publish args.count tasks over one connection; returns (count, destination, seconds)."""
    name, make_args = KINDS[args.task]
    task = app.tasks[name]
    options: dict[str, Any] = {}
    for key in ("priority", "countdown", "eta"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)

    started = time.monotonic()
    # One connection and producer for everything; kombu's publish batch pipelines the LPUSHes.
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1)
        if args.queue:
            queue = app.amqp.queues.get(args.queue) or Queue(
                args.queue, Exchange(args.queue, type="direct"), routing_key=args.queue
            )
            # Declared up front: this writes the binding into Redis, which is how the exporter
            # (and anyone else) finds a queue that no worker consumes.
            queue.declare(channel=producer.channel)
            options.update(queue=queue, routing_key=args.queue)
            destination = args.queue
        else:
            destination = "the app's routing"
        bar = ProgressBar(args.count, label=f"{args.task} -> {destination} ")
        with producer.batch(max_size=BATCH):
            for i in range(args.count):
                task.apply_async(make_args(i, args), producer=producer, **options)
                bar.advance()
        bar.close()
    return args.count, destination, time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Imported only now, so that --help and argument errors need no broker settings.
        from workers import tasks  # noqa: F401 - registers the shared tasks with the app
        from workers.app import app
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        count, destination, took = publish(app, args)
    except (KombuError, RedisError, OSError) as exc:
        url = maybe_sanitize_url(app.conf.broker_url)
        print(f"{PROG}: error: cannot publish to {url}: {exc}", file=sys.stderr)
        return 1
    rate = count / took if took > 0 else float("inf")
    print(f"published {count} {args.task} task(s) to {destination} in {took:.2f}s ({rate:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
