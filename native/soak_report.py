"""The soak's verdict: notifications at the receiver, scrapes of every target from every
Prometheus replica, rule evaluation failures, and each component's memory at start and end.

The functions that count take what the servers answered (the receiver's GET /alerts, the
Prometheus HTTP API's JSON) and do no I/O, so they can be checked against real answers;
`query_*` ask the servers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

TIMEOUT_S = 10


@dataclass(frozen=True)
class TargetScrapes:
    replica: str  # the Prometheus instance that scraped
    job: str
    instance: str
    samples: int  # scrapes in the window (samples of `up`)
    failed: int  # of those, scrapes that failed (up == 0)


@dataclass(frozen=True)
class Memory:
    component: str
    start_kib: int | None  # None: the process was not there
    end_kib: int | None
    processes: int = 1  # at the end (e.g. a prefork worker and its pool)
    half_kib: int | None = None  # at half time


def notification_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per alert in every notification the receiver stored (its GET /alerts)."""
    out = []
    for record in records:
        for alert in record.get("payload", {}).get("alerts", []):
            labels = alert.get("labels", {})
            where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
            out.append(
                f"{record.get('received_at', '?')} {alert.get('status', '?').upper()} {labels.get('alertname')} {where}"
            )
    return out


def _vector(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    if answer.get("status") != "success" or answer.get("data", {}).get("resultType") != "vector":
        raise ValueError(f"not an instant vector answer: {str(answer)[:200]}")
    return answer["data"]["result"]


def target_scrapes(replica: str, counts: Mapping[str, Any], ups: Mapping[str, Any]) -> list[TargetScrapes]:
    """Per target, from the answers to `count_over_time(up[W])` and `sum_over_time(up[W])` of
    one replica: up is 1 for a scrape that worked, 0 for one that failed."""
    key = lambda s: (s["metric"].get("job", ""), s["metric"].get("instance", ""))  # noqa: E731
    sums = {key(s): float(s["value"][1]) for s in _vector(ups)}
    out = []
    for s in _vector(counts):
        samples = int(float(s["value"][1]))
        out.append(TargetScrapes(replica, *key(s), samples, samples - round(sums.get(key(s), 0))))
    return sorted(out, key=lambda t: (t.replica, t.job, t.instance))


def scalar_sum(answer: Mapping[str, Any]) -> float:
    """The sum over an instant vector answer (0 for an empty one)."""
    return sum(float(s["value"][1]) for s in _vector(answer))


def alert_names(answer: Mapping[str, Any]) -> list[str]:
    """`alertname (state)` of each series of an answer about ALERTS."""
    return sorted({f"{s['metric'].get('alertname')} ({s['metric'].get('alertstate')})" for s in _vector(answer)})


def problems(
    notifications: Sequence[str],
    scrapes: Sequence[TargetScrapes],
    expected_targets: Mapping[str, set[tuple[str, str]]],
    min_samples: int,
    rule_failures: Mapping[str, float],
    memory: Sequence[Memory],
    restarts: Sequence[str],
) -> list[str]:
    """Everything that makes the soak fail, one line each; empty when it passed.
    `expected_targets`: replica -> (job, instance) pairs it must have scraped; `min_samples`:
    the scrapes each target must have had in the window (fewer: scrapes that never happened)."""
    out = [f"notification: {line}" for line in notifications]
    for t in scrapes:
        if t.failed:
            out.append(f"{t.replica}: {t.failed} of {t.samples} scrapes of {t.job} {t.instance} failed")
        if t.samples < min_samples:
            out.append(f"{t.replica}: {t.job} {t.instance} scraped {t.samples} times, expected at least {min_samples}")
    for replica, targets in expected_targets.items():
        seen = {(t.job, t.instance) for t in scrapes if t.replica == replica}
        out += [f"{replica}: never scraped {job} {instance}" for job, instance in sorted(targets - seen)]
    out += [f"{replica}: {n:g} rule evaluation failures" for replica, n in rule_failures.items() if n]
    out += [
        f"{m.component}: no process at the {'start' if m.start_kib is None else 'end'}"
        for m in memory
        if None in (m.start_kib, m.end_kib)
    ]
    out += [f"restarted: {r}" for r in restarts]
    return out


def memory_table(memory: Sequence[Memory]) -> list[str]:
    def mib(kib: int | None) -> str:
        return "-" if kib is None else f"{kib / 1024:.1f}"

    width = max(len("component"), *(len(m.component) for m in memory))
    lines = [f"{'component':<{width}}  {'start MiB':>9}  {'half-time':>9}  {'end MiB':>8}  {'change':>7}  processes"]
    for m in memory:
        change = "-" if None in (m.start_kib, m.end_kib) else f"{(m.end_kib - m.start_kib) / 1024:+.1f}"  # type: ignore[operator]
        lines.append(
            f"{m.component:<{width}}  {mib(m.start_kib):>9}  {mib(m.half_kib):>9}  {mib(m.end_kib):>8}  {change:>7}"
            f"  {m.processes}"
        )
    return lines


# -- asking the servers -------------------------------------------------------------------------
def query(prometheus_url: str, promql: str, at: float) -> dict[str, Any]:
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql, "time": at}, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def query_scrapes(replica: str, prometheus_url: str, start: float, end: float) -> list[TargetScrapes]:
    """Every target's scrapes between `start` and `end` (unix seconds), as `replica` saw them."""
    window = f"{max(1, int(end - start))}s"
    counts = query(prometheus_url, f"count_over_time(up[{window}])", end)
    ups = query(prometheus_url, f"sum_over_time(up[{window}])", end)
    return target_scrapes(replica, counts, ups)


def query_received(receiver_url: str) -> list[dict[str, Any]]:
    """Every notification the receiver stored, as it stored them."""
    response = requests.get(f"{receiver_url}/alerts", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()["payloads"]
