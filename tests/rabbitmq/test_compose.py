"""docker-compose.rabbitmq.yml on top of docker-compose.yml, as compose would run it: the stack on
RabbitMQ, passwords required and defaulted nowhere, the exporter as the monitoring user, nothing
published beyond loopback; and the one-shot that creates that user, against the private node."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from celery_queue_exporter.consumers import INSPECT_PERMISSIONS_AMQP
from rabbitmq import monitor_user
from tests.rabbitmq.helpers import make_reader
from tests.support.compose import COMPOSE, COMPOSE_SECRETS, compose_config
from tests.support.procs import REPO
from tests.support.rabbitmq import RabbitMQNode

OVERRIDE = REPO / "docker-compose.rabbitmq.yml"
FILES = (COMPOSE, OVERRIDE)
SECRETS = {
    **COMPOSE_SECRETS,
    "RABBITMQ_PASSWORD": "test-secret-rabbitmq-0123",
    "RABBITMQ_EXPORTER_PASSWORD": "test-secret-monitor-0123",
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    assert compose_config(SECRETS, FILES, quiet=True).returncode == 0
    result = compose_config(SECRETS, FILES)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_the_stack_runs_on_rabbitmq(services: dict[str, Any]) -> None:
    app_url = f"amqp://celery:{SECRETS['RABBITMQ_PASSWORD']}@rabbitmq:5672//"
    for name in ("worker", "beat", "flower"):
        env = services[name]["environment"]
        assert (env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"]) == (app_url, "rpc://"), name
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
    assert services["flower"]["environment"]["FLOWER_BROKER_API"].startswith("http://celery:")
    exporter = services["exporter"]
    monitor = f"amqp://monitor:{SECRETS['RABBITMQ_EXPORTER_PASSWORD']}@rabbitmq:5672//"
    assert exporter["environment"]["CELERY_EXPORTER_BROKER_URL"] == monitor
    assert exporter["depends_on"]["rabbitmq-users"]["condition"] == "service_completed_successfully"
    users = services["rabbitmq-users"]["environment"]
    assert users["RABBITMQ_MONITOR_PASSWORD"] == SECRETS["RABBITMQ_EXPORTER_PASSWORD"]
    rabbit = services["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+-management(-alpine)?", rabbit["image"]), "a pinned management image"
    assert rabbit["environment"]["RABBITMQ_DEFAULT_PASS"] == SECRETS["RABBITMQ_PASSWORD"]


def test_only_loopback_and_no_secret_on_a_command_line(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port}"
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        command = " ".join(svc.get("command") or []) + " ".join(svc.get("healthcheck", {}).get("test") or [])
        assert not [s for s in SECRETS.values() if s.split(":")[-1] in command], name
    assert {str(p).rsplit(":", 1)[1].split("/")[0] for p in services["rabbitmq"]["ports"]} == {"5672", "15672"}


@pytest.mark.parametrize("secret", ["RABBITMQ_PASSWORD", "RABBITMQ_EXPORTER_PASSWORD"])
def test_compose_refuses_to_run_without_each_rabbitmq_secret(secret: str) -> None:
    result = compose_config({k: v for k, v in SECRETS.items() if k != secret}, FILES, quiet=True)
    assert result.returncode != 0
    assert secret in result.stderr
    # docker-compose.yml alone does not ask for them: Redis users need not set them.
    assert compose_config(COMPOSE_SECRETS, quiet=True).returncode == 0


def test_no_rabbitmq_secret_has_a_default() -> None:
    text = OVERRIDE.read_text()
    found = re.findall(r"\$\{(\w*PASSWORD\w*)(:?[-?])?[^}]*\}", text)
    assert found and all(op == ":?" for _, op in found), found


def test_the_monitor_user_reads_the_queues_and_may_run_inspect_only(rabbitmq: RabbitMQNode, vhost: str) -> None:
    admin = f"http://{rabbitmq.admin_user}:{rabbitmq.admin_password}@127.0.0.1:{rabbitmq.management_port}"
    user = f"monitor-{vhost}"
    monitor_user.ensure(admin, user, "pw-1", vhost)
    monitor_user.ensure(admin, user, "pw-2", vhost)  # again: updated, not an error
    status, info = rabbitmq.api("GET", f"/api/users/{user}")
    assert status == 200 and info["tags"] in (["monitoring"], "monitoring"), info
    status, perms = rabbitmq.api("GET", f"/api/permissions/{vhost}/{user}")
    assert {k: perms[k] for k in ("configure", "write", "read")} == INSPECT_PERMISSIONS_AMQP
    assert make_reader(rabbitmq, vhost, broker_url=rabbitmq.amqp_url(vhost, user, "pw-2")).read().up
    with pytest.raises(monitor_user.Failed, match="HTTP 401"):
        monitor_user.ensure(admin.replace(rabbitmq.admin_password, "wrong"), user, "pw", vhost)
