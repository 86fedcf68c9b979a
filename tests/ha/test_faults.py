"""Faults of the highly available alerting topology (native/ha.py), with real processes: two
Prometheus replicas, two clustered Alertmanagers, the receiver, the exporter on a private Redis.

Each test makes a backlog in its own queue (nobody consumes it), so its alert is its own group,
and leaves every instance running for the next test. Timings: scrape and evaluation every 1 s,
`for:` 5 s, group_wait 1 s, group_interval 2 s, --cluster.peer-timeout 1 s: below the group
interval, as production has it (15 s against 5 m); equal to it, the first Alertmanager's next
flush and the second one's wait end together, and both notify."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from native import ha
from tests.faults.support import Report
from tests.ha.topology import HATopology
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow

A, B = ha.REPLICAS
AM_A, AM_B = ha.INSTANCES["alertmanager"]
PROM_A = ha.INSTANCES["prometheus"][0]


def seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def quiet_period(topo: HATopology) -> float:
    """After a first notification, the time in which a duplicate would have been sent: the
    second Alertmanager's wait (the peer timeout) plus a group interval, and a second of slack."""
    return seconds(topo.peer_timeout) + seconds(topo.timings["group_interval"]) + 1


def wait_pending(topo: HATopology, queue: str) -> None:
    wait_until(
        lambda: all(topo.alert_states(r, queue) == {"pending"} for r in ha.REPLICAS),
        30,
        f"the backlog alert of {queue} pending in both replicas",
    )


def wait_notified(topo: HATopology, queue: str, status: str = "firing", timeout: float = 60) -> float:
    """Waits for the first notification; returns the time.time() it was seen."""
    wait_until(lambda: topo.notifications(queue, status), timeout, f"a {status} notification for {queue}")
    return time.time()


def senders(notes: list[dict]) -> str:
    return ", ".join(n["sender"] for n in notes) or "none"


def resolve(topo: HATopology, queue: str, report: Report) -> list[dict]:
    """Drain the queue, wait for the resolved notification and the quiet period after it."""
    drained = time.time()
    topo.drain(queue)
    report.injected(f"{queue} drained (its list deleted)")
    seen = wait_notified(topo, queue, "resolved")
    time.sleep(quiet_period(topo))
    notes = topo.notifications(queue, "resolved")
    report.figure(f"{queue}: resolved notification, seconds after the drain", seen - drained, "s")
    report.observed(f"{queue}: {len(notes)} resolved notification(s), from {senders(notes)}")
    return notes


def test_both_up_one_firing_and_one_resolved(topology: HATopology, report: Report) -> None:
    queue = "ha_both_up"
    started = time.time()
    topology.backlog(queue)
    report.injected(f"1001 tasks in {queue}; both replicas, both Alertmanagers up")
    wait_until(lambda: topology.alert_states(A, queue) == {"firing"}, 60, f"the alert of {queue} firing")
    fired = time.time()
    seen = wait_notified(topology, queue)
    time.sleep(quiet_period(topology))
    firing = topology.notifications(queue)
    report.figure(f"{queue}: alert firing in Prometheus, seconds after the publish began", fired - started, "s")
    report.figure(f"{queue}: firing notification, seconds after the alert fired", seen - fired, "s")
    report.observed(f"{queue}: {len(firing)} firing notification(s), from {senders(firing)}")
    assert not [n for n in firing if "replica" in n["labels"]], "the replica label reached Alertmanager"
    assert len(firing) == 1, "one alert, one notification: the replicas' copies are one alert and the peers dedupe"
    resolved = resolve(topology, queue, report)
    assert len(resolved) == 1
    assert len(topology.notifications(queue)) == 1


def kill_while_pending(topology: HATopology, queue: str, name: str, report: Report) -> list[dict]:
    """A backlog in `queue`; instance `name` SIGKILLed once both replicas have its alert pending;
    the firing notifications of the quiet period after the first."""
    topology.backlog(queue)
    wait_pending(topology, queue)
    killed = topology.signal(name, signal.SIGKILL)
    report.injected(
        f"{name} (replica {ha.replica_of(name)}) SIGKILLed while both replicas had the alert of {queue} pending"
    )
    seen = wait_notified(topology, queue)
    time.sleep(quiet_period(topology))
    firing = topology.notifications(queue)
    report.figure(f"{queue}: firing notification, seconds after the kill", seen - killed, "s")
    report.observed(f"{queue}: {len(firing)} firing notification(s), from {senders(firing)}")
    return firing


def test_alertmanager_killed_while_pending_one_firing(topology: HATopology, report: Report) -> None:
    queue = "ha_am_killed"
    firing = kill_while_pending(topology, queue, AM_A, report)
    assert len(firing) == 1
    assert firing[0]["sender"] == AM_B

    topology.restart_instance(AM_A)  # same storage folder: it rejoins and syncs the notification log
    report.injected(f"{AM_A} started again on its data folder")
    # Its groups now flush out of step with its peer's: a change that lands between the two
    # flushes can make the second one notify what it saw before (at least once, never lost).
    resolved = resolve(topology, queue, report)
    report.figure(f"{queue}: duplicate firing notifications after the rejoin", len(topology.notifications(queue)) - 1)
    report.figure(f"{queue}: duplicate resolved notifications after the rejoin", len(resolved) - 1)
    report.lost(f"{queue}: resolved notifications", 0 if resolved else 1)
    assert resolved, "the resolution is not lost"


def test_prometheus_killed_while_pending_one_firing(topology: HATopology, report: Report) -> None:
    queue = "ha_prom_killed"
    firing = kill_while_pending(topology, queue, PROM_A, report)
    assert len(firing) == 1

    topology.restart_instance(PROM_A)  # same TSDB folder
    wait_until(lambda: topology.alert_states(A, queue) == {"firing"}, 30, f"{PROM_A} firing again")
    report.injected(f"{PROM_A} started again on its TSDB folder; its alert of {queue} pending, then firing again")
    time.sleep(quiet_period(topology))
    firing = topology.notifications(queue)
    report.observed(f"{queue}: {len(firing)} firing notification(s) after {PROM_A} sent its own copy again")
    assert len(firing) == 1
    resolved = resolve(topology, queue, report)
    report.lost(f"{queue}: resolved notifications", 0 if resolved else 1)
    assert resolved, "the resolution is not lost"


def silence(url: str, queue: str) -> str:
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "queue_name", "value": queue, "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "tests/ha",
        "comment": f"{queue} is being drained on purpose",
    }
    reply = requests.post(url + "/api/v2/silences", json=body, timeout=5)
    reply.raise_for_status()
    return reply.json()["silenceID"]


def test_silence_shared_and_kept_across_a_restart(topology: HATopology, report: Report) -> None:
    hushed, loud = "ha_hushed", "ha_loud"
    made = time.time()
    silence_id = silence(topology.am(A), hushed)
    report.injected(f"a silence of queue {hushed} created on {AM_A}")
    wait_until(lambda: topology.silences(B).get(silence_id) == "active", 10, f"the silence on {AM_B}")
    report.figure(f"silence seen active on {AM_B}, seconds after it was made on {AM_A}", time.time() - made, "s")

    killed = topology.signal(AM_A, signal.SIGKILL)
    snapshot = topology.tmp / AM_A / "data" / "silences"
    on_disk = snapshot.exists() and silence_id.encode() in snapshot.read_bytes()
    topology.restart_instance(AM_A)
    report.injected(
        f"{AM_A} SIGKILLed {killed - made:.1f}s after the silence was made (in its snapshot on disk: {on_disk}), "
        "started again on its data folder"
    )
    state = topology.silences(A).get(silence_id)
    report.observed(f"{AM_A} after the restart: the silence is {state or 'gone'}")
    assert state == "active"

    topology.backlog(hushed)
    topology.backlog(loud)
    report.injected(f"1001 tasks in {hushed} (silenced) and in {loud} (not)")
    wait_notified(topology, loud)
    for replica in ha.REPLICAS:  # each Alertmanager has the alert and silences it itself
        wait_until(
            lambda r=replica: [a for a in topology.am_alerts(r, hushed) if a["status"]["silencedBy"] == [silence_id]],
            30,
            f"the alert of {hushed} silenced on alertmanager-{replica}",
        )
    time.sleep(quiet_period(topology))
    loud_notes, hushed_notes = topology.notifications(loud), topology.notifications(hushed)
    report.observed(
        f"both Alertmanagers mark the alert of {hushed} silenced; notifications: {loud} {len(loud_notes)}, "
        f"{hushed} {len(hushed_notes)}"
    )
    assert len(loud_notes) == 1
    assert hushed_notes == []
    topology.drain(hushed)
    topology.drain(loud)


def test_alertmanager_frozen_past_the_peer_timeout(topology: HATopology, report: Report) -> None:
    # Frozen, not dead: its port still accepts connections. Prometheus sends each batch of alerts
    # to every Alertmanager at once but starts the next batch only when all have answered or its
    # alertmanager timeout (10 s) passed, so the frozen one can hold alerts back from the other.
    queue = "ha_am_frozen"
    min_freeze = 3 * seconds(topology.peer_timeout)
    topology.backlog(queue)
    wait_pending(topology, queue)
    frozen = topology.signal(AM_A, signal.SIGSTOP)
    report.injected(
        f"{AM_A} (the first in the cluster's order) frozen (SIGSTOP) while the alert of {queue} was pending"
    )
    fired = notified = None
    try:
        deadline = frozen + 40
        while (notified is None or time.time() < frozen + min_freeze) and time.time() < deadline:
            if fired is None and topology.alert_states(A, queue) == {"firing"}:
                fired = time.time()
            if notified is None and topology.notifications(queue):
                notified = time.time()
            time.sleep(0.1)
    finally:
        resumed = topology.signal(AM_A, signal.SIGCONT)
    report.injected(
        f"{AM_A} resumed (SIGCONT) after {resumed - frozen:.1f}s, {topology.peer_timeout} being the peer timeout"
    )
    assert fired is not None and notified is not None, "the other Alertmanager notifies while one is frozen"
    report.figure(f"{queue}: alert firing in Prometheus, seconds after the freeze", fired - frozen, "s")
    report.figure(
        f"{queue}: firing notification while {AM_A} was frozen, seconds after the alert fired", notified - fired, "s"
    )
    report.observed(f"{queue}: notified during the freeze by {senders(topology.notifications(queue))}")
    wait_until(lambda: topology.cluster_ready(AM_A), 30, f"{AM_A} back in the cluster")
    report.figure(f"{AM_A} back in a cluster of two, seconds after it resumed", time.time() - resumed, "s")
    time.sleep(quiet_period(topology))
    firing = topology.notifications(queue)
    report.observed(f"{queue}: {len(firing)} firing notification(s) in all, from {senders(firing)}")
    report.figure(f"{queue}: duplicate firing notifications after the resume", len(firing) - 1)
    report.lost(f"{queue}: firing notifications", 0 if firing else 1)
    resolved = resolve(topology, queue, report)
    report.figure(f"{queue}: duplicate resolved notifications", len(resolved) - 1)
    report.lost(f"{queue}: resolved notifications", 0 if resolved else 1)
    assert resolved, "the resolved notification is not lost"
