"""Readiness probes of the stack's components, each bounded. native/components.py gives every
component one; the native runner's table and the test stack both ask it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from celery_queue_exporter.rabbitmq_management import ManagementClient, ManagementError, ManagementTarget

TIMEOUT = 2.0


@dataclass(frozen=True)
class Status:
    """`ready`: the component answers (what a later start step may wait for); `healthy`: it also
    does its job (the exporter reads the broker, Prometheus has every target up)."""

    ready: bool
    healthy: bool
    state: str


Probe = Callable[[], Status]

NOT_READY = Status(False, False, "not ready")


@dataclass(frozen=True)
class Row:
    component: str
    healthy: bool
    state: str
    url: str


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT)


def _answered(ok: bool) -> Status:
    return Status(True, True, "healthy") if ok else NOT_READY


def redis_ping(url: str) -> Probe:
    def check() -> Status:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        try:
            return _answered(bool(client.ping()))
        finally:
            client.close()

    return check


def celery_ping(broker_url: str) -> Probe:
    """A worker of the demo app on this broker answers `celery inspect ping`."""

    def check() -> Status:
        from workers.app import create_app
        from workers.config import Settings, default_result_backend

        app = create_app(Settings(broker_url=broker_url, result_backend=default_result_backend(broker_url)))
        try:
            replies = app.control.ping(timeout=1.0)
        finally:
            app.close()
        if not replies:
            return Status(False, False, "no ping reply")
        return Status(True, True, f"healthy, {len(replies)} worker(s) answer ping")

    return check


def rabbitmq(target: ManagementTarget) -> Probe:
    """The management API answers for the broker URL's user and vhost: what the exporter reads."""

    def check() -> Status:
        client = ManagementClient(target, TIMEOUT)
        try:
            overview = client.get_json("/api/overview")
            client.get_json(target.queues_path() + "?columns=name&page=1&page_size=1&pagination=true")
        except ManagementError as exc:
            return Status(False, False, exc.reason)
        finally:
            client.close()
        version = overview.get("rabbitmq_version", "?") if isinstance(overview, dict) else "?"
        return Status(True, True, f"healthy, RabbitMQ {version}")

    return check


def http_ok(url: str) -> Probe:
    return lambda: _answered(_get(url).status_code == 200)


def http_text(url: str, text: str) -> Probe:
    return lambda: _answered(_get(url).text.strip() == text)


def exporter(metrics_url: str) -> Probe:
    """Ready once /metrics answers with celery_broker_up; healthy when that is 1."""

    def check() -> Status:
        families = text_string_to_metric_families(_get(metrics_url).text)
        up = {sample.value for f in families for sample in f.samples if sample.name == "celery_broker_up"}
        if up == {1}:
            return Status(True, True, "healthy")
        return Status(bool(up), False, "broker unreachable" if up == {0} else "not ready")

    return check


def prometheus(url: str) -> Probe:
    """Ready on /-/ready; healthy when every active target is up."""

    def check() -> Status:
        if _get(url + "/-/ready").status_code != 200:
            return NOT_READY
        targets = _get(url + "/api/v1/targets?state=active").json()["data"]["activeTargets"]
        up = sorted(t["labels"]["job"] for t in targets if t["health"] == "up")
        down = sorted(t["labels"]["job"] for t in targets if t["health"] != "up")
        if not targets or down:
            return Status(
                True, False, f"targets {len(up)}/{len(targets)} up" + (f" (down: {', '.join(down)})" if down else "")
            )
        return Status(True, True, f"healthy, targets {len(up)}/{len(targets)} up")

    return check


def alertmanager_cluster(url: str, size: int) -> Probe:
    """Ready on /-/ready; healthy when it sees all `size` members of its cluster and its gossip
    has settled (until then it holds its notifications back)."""

    def check() -> Status:
        if _get(url + "/-/ready").status_code != 200:
            return NOT_READY
        cluster = _get(url + "/api/v2/status").json()["cluster"]
        peers = len(cluster.get("peers") or [])
        state = f"cluster {cluster['status']}, {peers}/{size} peers"
        healthy = cluster["status"] == "ready" and peers == size
        return Status(True, healthy, f"healthy, {state}" if healthy else state)

    return check


def run(probe: Probe) -> Status:
    """The probe's answer; any trouble reaching the component means "not ready", with its reason."""
    try:
        return probe()
    except (requests.RequestException, redis.RedisError, OSError, KeyError, ValueError) as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError | redis.ConnectionError):
            reason = "not answering"
        return Status(False, False, reason)
    except Exception as exc:  # noqa: BLE001 - e.g. kombu's errors while the broker starts
        return Status(False, False, f"{type(exc).__name__}")
