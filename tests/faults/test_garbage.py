"""Garbage in Redis, as a buggy producer, a hand-typed redis-cli command or another app sharing the
database leaves it: keys of the wrong type, messages that are not JSON, binding members of the
wrong shape, corrupt unacked entries. The monitoring keeps running and counts it; no valid task
is lost.

Garbage that a worker pops from a queue it consumes is a different matter: kombu raises while
decoding it and the Celery worker exits (Celery 5.7 / kombu 5.7). The second test shows what the
stack then does: the supervisor restarts the worker, Flower reports it offline meanwhile, and
every valid task still runs."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
import requests

from tests.faults.support import Report, compose_stack, producer
from tests.support.procs import wait_until
from tests.support.stack import FLOWER_AUTH

pytestmark = pytest.mark.slow

SEP = "\x06\x16"


def errors(stack) -> dict[str, float]:
    out = {}
    for line in stack.exporter_metrics().splitlines():
        if line.startswith("celery_exporter_scrape_errors_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def test_garbage_in_redis_is_counted_and_nothing_falls_over(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(compose_stack(tmp_path))
    app = producer(stack)
    client = stack.redis.client()
    before = errors(stack)

    # Queues nobody consumes, bound so the exporter reports them, holding garbage.
    client.sadd("_kombu.binding.junk", f"junk{SEP}{SEP}junk", f"strkey{SEP}{SEP}strkey", f"hashq{SEP}{SEP}hashq")
    client.lpush("junk", b"\xff\xfe not json at all", b"{}", b"[1, 2, 3]", json.dumps({"body": None}))
    client.set("strkey", "a queue that is a string")
    client.hset("hashq", "a", "queue that is a hash")
    client.set("hashq" + SEP + "3", "a priority list that is a string")
    # Binding sets of the wrong type and members of the wrong shape.
    client.set("_kombu.binding.notaset", "x")
    client.sadd("_kombu.binding.weird", "no separators here", SEP * 5, "\u2603" * 300)
    # Unacked entries that say nothing about their queue.
    client.hset("unacked", "tag-garbage", "garbage")
    client.zadd("unacked_index", {"tag-garbage": time.time()})
    # And a big binary value somewhere else in the database.
    client.set("someone-elses-key", bytes(range(256)) * 4096)
    report.injected(
        "queues of the wrong type (string, hash), non-JSON and non-message list items, binding keys "
        "of the wrong type and members of the wrong shape, a corrupt unacked entry, a 1 MiB binary value"
    )

    good = [app.tasks["workers.tasks.add"].delay(i, i) for i in range(20)]
    assert [r.get(timeout=30) for r in good] == [2 * i for i in range(20)]
    time.sleep(3)  # a few scrapes and evaluations over the garbage

    after = errors(stack)
    counted = {reason: after[reason] - before.get(reason, 0) for reason in after}
    report.observed(f"exporter errors counted, by reason: {counted}")
    assert counted["wrong_type"] > 0 and counted["malformed_message"] > 0 and counted["malformed_unacked"] > 0
    assert counted["redis"] == 0
    assert stack.exporter_value("celery_broker_up") == 1
    assert stack.exporter_value("celery_queue_length", queue_name="junk") == 4
    assert stack.exporter_value("celery_queue_length", queue_name="default") == 0
    assert stack.query('increase(celery_exporter_scrape_errors_total{reason="wrong_type"}[1m]) > 0')

    auth = tuple(FLOWER_AUTH.split(":", 1))
    pages = {
        path: requests.get(stack.url("flower") + path, auth=auth, timeout=10).status_code
        for path in ("/", "/broker", "/api/queues/length", "/api/workers", "/tasks")
    }
    report.observed(f"Flower pages with the garbage in Redis: {pages}")
    assert all(code == 200 for code in pages.values())
    assert stack.targets_up() == {"prometheus", "alertmanager", "celery-queue-exporter", "flower"}
    assert all(proc.alive() for proc in stack.procs.values())
    report.lost("valid tasks published with the garbage in Redis", 0)
    report.observed("20/20 valid tasks ran; every process alive; every Prometheus target up")
    app.close()


GARBAGE = {
    "not JSON": b"\xff\xfe not json at all",
    "a JSON list": b"[1, 2, 3]",
    "a string key": None,  # the queue's own key replaced by a string: BRPOP fails with WRONGTYPE
}


def test_garbage_in_a_consumed_queue(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(compose_stack(tmp_path))
    app = producer(stack)
    add = app.tasks["workers.tasks.add"]
    client = stack.redis.client()
    first = [add.delay(i, 1) for i in range(10)]
    assert [r.get(timeout=30) for r in first] == [i + 1 for i in range(10)]

    for kind, garbage in GARBAGE.items():
        if garbage is None:
            client.set("error_logs", "not a list")  # a queue the worker consumes, never published to here
            report.injected("queue error_logs (consumed by the worker) replaced by a string key")
        else:
            client.lpush("default", garbage)
            report.injected(f"{kind} pushed into queue default, which the worker consumes")
        after = [add.delay(i, 2) for i in range(10)]
        worker = stack.procs["worker"]
        # The worker meets the garbage before the tasks behind it: it either exits or runs them
        # (a fixed sleep here raced a slow machine: the worker died after the test judged it alive).
        wait_until(
            lambda w=worker, a=after: not w.alive() or all(r.ready() for r in a), 60, "the worker to exit or run them"
        )
        exited = not worker.alive()
        if exited:
            wait_until(lambda: stack.query('flower_worker_online{worker=~"e2e-worker@.*"} == 0'), 15, "Flower: offline")
            report.observed(
                f"the worker exited (code {worker.popen.returncode}: kombu raised in its event loop); "
                "flower_worker_online 0; the supervisor restarts it"
            )
            # What supervisord (autorestart) and compose (restart:) do; a worker facing the string
            # key may never answer a ping (a crash loop), so that one is not waited for.
            stack.start_component("worker", wait=garbage is not None)
            if garbage is None:
                # A prefork worker meets the key only once its pool has started (about 4 s here).
                restarted = stack.procs["worker"]
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda p=restarted: not p.alive(), 20, "the restarted worker to exit")
                again = not restarted.alive()
                report.observed(f"restarted worker {'exited again: a crash loop' if again else 'kept running'}")
                client.delete("error_logs")
                report.injected("the string key deleted (the fix an operator applies)")
                if again:
                    stack.start_component("worker")
        else:
            report.observed(f"the worker survived {kind}")
        done = [r.get(timeout=60) for r in after]
        assert done == [i + 2 for i in range(10)]
        report.lost(f"valid tasks queued behind {kind}", 0)
        report.figure(f"worker exits on {kind} in a consumed queue", int(exited))
        for name, proc in stack.procs.items():
            assert proc.alive(), name
        report.observed(f"10/10 valid tasks behind {kind} ran; Flower, exporter, Prometheus never stopped")
        # the next kind starts from a worker that answers
        wait_until(lambda: stack.query('flower_worker_online{worker=~"e2e-worker@.*"} == 1'), 15, "online again")
    app.close()
