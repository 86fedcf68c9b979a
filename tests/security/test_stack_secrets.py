"""The whole stack on the compose Redis (passwords, ACL users; the exporter as the read-only
`exporter` user), checked from outside as an intruder on the machine would: Flower refuses
strangers, every port is on 127.0.0.1, and none of the test's secrets shows up anywhere a reader
of logs, metrics, Prometheus, Alertmanager, the receiver or the process list would see it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.faults.support import Report, compose_stack, delivered, listening_addresses, producer, publish
from tests.support.procs import wait_until
from tests.support.stack import FLOWER_AUTH, LocalStack

pytestmark = pytest.mark.slow

FLOWER_USER, FLOWER_PASSWORD = FLOWER_AUTH.split(":", 1)


def test_flower_ui_and_api_need_credentials(tmp_path: Path, stacks, report: Report) -> None:
    stack = stacks(compose_stack(tmp_path))
    app = producer(stack)
    task = app.tasks["workers.tasks.ack_task"].apply_async((30,), countdown=60)  # something to revoke
    flower = stack.url("flower")
    refused, allowed = {}, {}
    for method, path in [
        ("GET", "/"),
        ("GET", "/workers"),
        ("GET", "/tasks"),
        ("GET", "/broker"),
        ("GET", "/api/workers"),
        ("GET", "/api/tasks"),
        ("GET", "/api/queues/length"),
        ("POST", f"/api/task/revoke/{task.id}?terminate=true"),
        ("POST", "/api/worker/shutdown/e2e-worker@nowhere"),
        ("POST", "/api/task/async-apply/workers.tasks.add"),
    ]:
        for auth in (None, (FLOWER_USER, "wrong-password"), ("someone", FLOWER_PASSWORD)):
            reply = requests.request(method, flower + path, auth=auth, timeout=10, json={"args": [1, 2]})
            refused[f"{method} {path} as {auth and auth[0]}"] = reply.status_code
        if method == "GET":
            allowed[path] = requests.get(flower + path, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10).status_code
    report.injected(f"{len(refused)} requests to Flower's UI and API without or with wrong credentials")
    assert set(refused.values()) == {401}, {k: v for k, v in refused.items() if v != 401}
    assert set(allowed.values()) == {200}, allowed
    revoked = stack.redis.client().smembers("revoked")  # nothing was revoked by the strangers
    assert task.id.encode() not in revoked
    open_paths = {p: requests.get(flower + p, timeout=10).status_code for p in ("/metrics", "/healthcheck")}
    report.observed(f"all refused with 401; with the credentials 200; open by Flower's design: {open_paths}")
    assert open_paths == {"/metrics": 200, "/healthcheck": 200}
    app.close()


def test_no_secret_anywhere_and_every_port_on_loopback(tmp_path: Path, stacks, report: Report) -> None:
    stack: LocalStack = stacks(compose_stack(tmp_path, beat=True, args={"exporter": ["--consumers-interval", "2"]}))
    server = stack.redis
    secrets = [*server.secrets, FLOWER_PASSWORD]

    # Exercise everything that could print a URL or a credential.
    app = producer(stack)
    assert app.tasks["workers.tasks.add"].delay(1, 2).get(timeout=30) == 3
    app.tasks["workers.tasks.sqrt_task"].delay(-1)
    publish(stack, "backlog", 1001)
    for user, password in (("default", "a-wrong-password-0123"), ("exporter", server.password)):
        stranger = redis.Redis(
            host="127.0.0.1", port=server.port, username=user, password=password, retry=Retry(NoBackoff(), 0)
        )
        with pytest.raises(redis.AuthenticationError):
            stranger.ping()
    requests.get(stack.url("flower") + "/", auth=(FLOWER_USER, "wrong"), timeout=5)
    wait_until(lambda: [a for a in delivered(stack, "CeleryQueueBacklog")], 60, "an alert at the receiver")
    wait_until(lambda: stack.exporter_value("celery_queue_consumers", queue_name="default") == 1, 20, "consumers")
    report.injected(
        "tasks run and failed, a backlog alert delivered, logins with wrong Redis and Flower passwords; "
        f"{len(secrets)} test secrets (3 Redis users, Flower)"
    )
    report.observed("the exporter, as the read-only ACL user, reads queues and counts consumers")

    # Every TCP port any process of the stack listens on is on 127.0.0.1.
    pids = {name: proc.pid for name, proc in stack.procs.items()} | {"redis": server.proc.pid}
    listening = {name: listening_addresses(pid) for name, pid in pids.items()}
    report.observed(f"listening sockets: { {n: sorted(p for _, p in a) for n, a in listening.items()} }")
    for name, addresses in listening.items():
        assert all(address == "127.0.0.1" for address, _ in addresses), (name, addresses)
    assert listening["redis"] and listening["prometheus"] and listening["flower"]

    places: dict[str, str] = {}
    for log in sorted(stack.logs.glob("*.log")):
        places[f"log {log.name}"] = log.read_text(errors="replace")
    places["receiver alerts.jsonl"] = stack.receiver_file.read_text()
    for name, pid in pids.items():
        places[f"command line of {name}"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    get = {
        "exporter /metrics": stack.url("exporter") + "/metrics",
        "exporter /": stack.url("exporter") + "/",
        "flower /metrics": stack.url("flower") + "/metrics",
        "receiver /alerts": stack.url("receiver") + "/alerts",
        "prometheus targets": stack.url("prometheus") + "/api/v1/targets",
        "prometheus config": stack.url("prometheus") + "/api/v1/status/config",
        "prometheus flags": stack.url("prometheus") + "/api/v1/status/flags",
        "prometheus rules": stack.url("prometheus") + "/api/v1/rules",
        "prometheus alerts": stack.url("prometheus") + "/api/v1/alerts",
        "alertmanager status": stack.url("alertmanager") + "/api/v2/status",
        "alertmanager alerts": stack.url("alertmanager") + "/api/v2/alerts",
        "alertmanager /metrics": stack.url("alertmanager") + "/metrics",
    }
    for what, url in get.items():
        places[what] = requests.get(url, timeout=10).text
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    for path in ("/", "/broker", "/workers", "/tasks", "/api/workers", "/api/tasks"):
        places[f"flower {path} (logged in)"] = requests.get(stack.url("flower") + path, auth=auth, timeout=10).text
    labels = requests.get(stack.url("prometheus") + "/api/v1/labels", timeout=10).json()["data"]
    for label in labels:
        reply = requests.get(stack.url("prometheus") + f"/api/v1/label/{label}/values", timeout=10).json()
        places[f"prometheus label {label} values"] = " ".join(reply["data"])

    leaks = [(where, secret[:8] + "...") for where, text in places.items() for secret in secrets if secret in text]
    report.figure("places searched for the test secrets", len(places))
    report.figure("secrets found", len(leaks))
    assert not leaks, leaks
    assert "redis://exporter:***@127.0.0.1" in places["exporter /"], "the landing page shows the URL redacted"
    app.close()
