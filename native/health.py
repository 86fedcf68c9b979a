"""Is each component of the native stack healthy? One probe per component, each bounded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from native.settings import Settings

TIMEOUT = 2.0


@dataclass(frozen=True)
class Row:
    component: str
    healthy: bool
    state: str
    url: str


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT)


def check_redis(s: Settings) -> tuple[bool, str]:
    client = redis.Redis.from_url(s.broker_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        client.ping()
        return True, "healthy"
    finally:
        client.close()


def check_flower(s: Settings) -> tuple[bool, str]:
    ok = _get(s.url("flower") + "/healthcheck").text.strip() == "OK"
    return ok, "healthy" if ok else "not ready"


def check_exporter(s: Settings) -> tuple[bool, str]:
    families = text_string_to_metric_families(_get(s.url("exporter") + "/metrics").text)
    up = {sample.value for f in families for sample in f.samples if sample.name == "celery_broker_up"}
    if up == {1}:
        return True, "healthy"
    return False, "broker unreachable" if up == {0} else "not ready"


def check_prometheus(s: Settings) -> tuple[bool, str]:
    if _get(s.url("prometheus") + "/-/ready").status_code != 200:
        return False, "not ready"
    targets = _get(s.url("prometheus") + "/api/v1/targets?state=active").json()["data"]["activeTargets"]
    up = sorted(t["labels"]["job"] for t in targets if t["health"] == "up")
    down = sorted(t["labels"]["job"] for t in targets if t["health"] != "up")
    if not targets or down:
        return False, f"targets {len(up)}/{len(targets)} up" + (f" (down: {', '.join(down)})" if down else "")
    return True, f"healthy, targets {len(up)}/{len(targets)} up"


def check_alertmanager(s: Settings) -> tuple[bool, str]:
    ok = _get(s.url("alertmanager") + "/-/ready").status_code == 200
    return ok, "healthy" if ok else "not ready"


def check_receiver(s: Settings) -> tuple[bool, str]:
    ok = _get(s.url("receiver") + "/-/healthy").status_code == 200
    return ok, "healthy" if ok else "not ready"


PROBES: dict[str, Callable[[Settings], tuple[bool, str]]] = {
    "redis": check_redis,
    "flower": check_flower,
    "exporter": check_exporter,
    "prometheus": check_prometheus,
    "alertmanager": check_alertmanager,
    "receiver": check_receiver,
}


def probe(name: str, s: Settings) -> tuple[bool, str]:
    try:
        return PROBES[name](s)
    except (requests.RequestException, redis.RedisError, OSError, KeyError, ValueError) as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError | redis.ConnectionError):
            reason = "not answering"
        return False, reason
