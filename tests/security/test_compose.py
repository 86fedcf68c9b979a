"""docker-compose.yml's security defaults, read from `docker-compose config` (what compose would
run) and from the file itself: passwords everywhere and defaults nowhere, the exporter as the
read-only user, Grafana closed, nothing published beyond loopback, no secret on a command line."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.faults.support import Report
from tests.support.compose import COMPOSE, COMPOSE_SECRETS, compose_config
from tests.support.procs import REPO


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result = compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def redis_urls(services: dict[str, Any]) -> dict[str, str]:
    return {
        f"{name}.{key}": value
        for name, svc in services.items()
        for key, value in (svc.get("environment") or {}).items()
        if isinstance(value, str) and value.startswith(("redis://", "rediss://"))
    }


def test_every_redis_url_carries_its_users_password(services: dict[str, Any], report: Report) -> None:
    urls = redis_urls(services)
    assert {"worker.CELERY_BROKER_URL", "beat.CELERY_BROKER_URL", "flower.CELERY_BROKER_URL"} <= set(urls)
    assert "exporter.CELERY_EXPORTER_BROKER_URL" in urls
    app_password = COMPOSE_SECRETS["REDIS_PASSWORD"]
    exporter_password = COMPOSE_SECRETS["REDIS_EXPORTER_PASSWORD"]
    for where, url in urls.items():
        if where.startswith("exporter."):
            assert url.startswith(f"redis://exporter:{exporter_password}@redis:6379/"), where
        else:
            assert url.startswith(f"redis://:{app_password}@redis:6379/"), where
    report.observed(f"{len(urls)} Redis URLs, each with its user's password: {sorted(urls)}")


@pytest.mark.parametrize("secret", sorted(COMPOSE_SECRETS))
def test_compose_refuses_to_run_without_each_secret(secret: str) -> None:
    result = compose_config({k: v for k, v in COMPOSE_SECRETS.items() if k != secret})
    assert result.returncode != 0
    assert secret in result.stderr


def test_no_secret_has_a_default_value() -> None:
    text = COMPOSE.read_text()
    for match in re.finditer(r"\$\{(\w*(PASSWORD|AUTH|SECRET|TOKEN)\w*)(:?[-?])?([^}]*)\}", text):
        name, op, value = match[1], match[3], match[4]
        if name == "REDIS_ADMIN_PASSWORD":  # optional: empty means no admin login at all
            assert op == ":-" and value == "", match[0]
        else:
            assert op == ":?", f"{match[0]}: a secret must be required, not defaulted"


def test_the_redis_service_runs_the_acl_config_and_keeps_its_data(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["command"] == ["sh", "/usr/local/etc/redis/start.sh"]
    assert redis["user"] == "redis"
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in redis["volumes"]]
    assert any(v.endswith("/redis:/usr/local/etc/redis:ro") for v in volumes), volumes
    assert any(v.startswith("redis-data:/data") for v in volumes), "the append-only file lives in a volume"
    assert "/run/redis" in redis["tmpfs"] and redis["environment"]["REDIS_ACL_FILE"].startswith("/run/redis/")
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in health and " -a " not in health


def test_no_secret_on_a_command_line(services: dict[str, Any]) -> None:
    secrets = [v for v in COMPOSE_SECRETS.values()]
    for name, svc in services.items():
        command = " ".join(svc.get("command") or []) + " " + " ".join(svc.get("entrypoint") or [])
        for secret in secrets:
            assert secret.split(":")[-1] not in command, f"{name}: a secret on the command line"
        assert "--basic-auth" not in command and "--requirepass" not in command, name


def test_flower_needs_credentials_from_the_environment(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == COMPOSE_SECRETS["FLOWER_BASIC_AUTH"]
    assert "${FLOWER_BASIC_AUTH:?" in COMPOSE.read_text()
    # Its /metrics is unauthenticated: Prometheus reaches it on the compose network only.
    targets = yaml.safe_load((REPO / "prometheus" / "targets" / "compose" / "flower.yml").read_text())
    assert [group["targets"] for group in targets] == [["flower:5555"]]


def test_grafana_admin_from_the_environment_no_anonymous_no_sign_up(services: dict[str, Any]) -> None:
    env = services["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == COMPOSE_SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_USERS_ALLOW_ORG_CREATE"] == "false"
    assert env["GF_SNAPSHOTS_EXTERNAL_ENABLED"] == "false"


def test_nothing_is_reachable_beyond_loopback(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port}"
        assert svc.get("network_mode") != "host", f"{name} on the host network bypasses the port bindings"
        assert not svc.get("privileged"), name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
    prometheus = " ".join(services["prometheus"]["command"])
    assert "--web.enable-lifecycle" not in prometheus, "anyone reaching Prometheus could POST /-/quit"
    alertmanager = services["alertmanager"]["command"]
    assert "--cluster.listen-address=" in alertmanager, "no gossip port"
