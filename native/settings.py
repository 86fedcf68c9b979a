"""Where the native stack lives and listens. Every port is overridable from the environment,
with the same variable names docker-compose.yml uses."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from native.components import AMQP_SCHEMES, DEFAULT_PORTS, HOST, REPO, TOOLS_BIN, VENV_BIN
from native.ha import DEFAULT_CLUSTER_PORTS
from native.ha import DEFAULT_PORTS as HA_PORTS
from prometheus.file_sd import DEFAULT_BROKER, BrokerNameError, check_broker_name

__all__ = ["HOST", "REPO", "TOOLS_BIN", "VENV_BIN", "Settings", "flower_basic_auth", "load"]

ALERT_PROFILES = ("demo", "production")


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name}={raw!r} is not a TCP port")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    run_dir: Path
    broker_url: str
    flower_port: int
    exporter_port: int
    prometheus_port: int
    alertmanager_port: int
    receiver_port: int
    alert_profile: str
    # HA=1: highly available alerting (native/ha.py), with the ports of its second instances
    ha: bool = False
    prometheus_b_port: int = HA_PORTS["prometheus-b"]
    alertmanager_b_port: int = HA_PORTS["alertmanager-b"]
    alertmanager_cluster_port: int = DEFAULT_CLUSTER_PORTS["alertmanager"]
    alertmanager_b_cluster_port: int = DEFAULT_CLUSTER_PORTS["alertmanager-b"]
    broker_name: str = DEFAULT_BROKER  # the `broker` label of the exporter's and Flower's targets
    management_url: str | None = None  # RabbitMQ's management API, when not on the broker's host:15672

    @property
    def on_rabbitmq(self) -> bool:
        return urlsplit(self.broker_url).scheme.lower() in AMQP_SCHEMES

    @property
    def redis_port(self) -> int:
        return urlsplit(self.broker_url).port or DEFAULT_PORTS["redis"]

    @property
    def broker_url_display(self) -> str:
        """The broker URL with any password masked: it is printed and logged."""
        parts = urlsplit(self.broker_url)
        if parts.password is None:
            return self.broker_url
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()

    @property
    def rules_dir(self) -> str:
        return f"rules/{self.alert_profile}"

    @property
    def ports(self) -> dict[str, int]:
        """Port by component name, as native/components.py's Layout takes them."""
        ports = {
            "redis": self.redis_port,
            "flower": self.flower_port,
            "exporter": self.exporter_port,
            "prometheus": self.prometheus_port,
            "alertmanager": self.alertmanager_port,
            "receiver": self.receiver_port,
        }
        if self.ha:
            ports.update({"prometheus-b": self.prometheus_b_port, "alertmanager-b": self.alertmanager_b_port})
        return ports

    @property
    def cluster_ports(self) -> dict[str, int]:
        """The Alertmanagers' gossip ports (127.0.0.1) by instance name; none without HA."""
        if not self.ha:
            return {}
        return {"alertmanager": self.alertmanager_cluster_port, "alertmanager-b": self.alertmanager_b_cluster_port}

    def url(self, component: str) -> str:
        return f"http://{HOST}:{self.ports[component]}"


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    profile = env.get("ALERT_PROFILE", "demo")
    if profile not in ALERT_PROFILES:
        raise SystemExit(f"ALERT_PROFILE={profile!r}: choose one of {', '.join(ALERT_PROFILES)}")
    broker = env.get("CELERY_BROKER_URL", f"redis://{HOST}:{DEFAULT_PORTS['redis']}/0")
    if urlsplit(broker).scheme.lower() not in ("redis", "rediss", *AMQP_SCHEMES):
        raise SystemExit(f"CELERY_BROKER_URL must be a redis:// or amqp:// URL, got scheme {urlsplit(broker).scheme!r}")
    if env.get("HA", "") not in ("", "0", "1"):
        raise SystemExit(f"HA={env['HA']!r}: HA=1 runs highly available alerting, HA=0 or unset the plain stack")
    try:
        broker_name = check_broker_name(env.get("BROKER_NAME", DEFAULT_BROKER))
    except BrokerNameError as e:
        raise SystemExit(f"BROKER_NAME: {e}") from None
    return Settings(
        run_dir=Path(env.get("STACK_RUN_DIR", REPO / "run")).resolve(),
        broker_url=broker,
        flower_port=_port(env, "FLOWER_PORT", DEFAULT_PORTS["flower"]),
        exporter_port=_port(env, "EXPORTER_PORT", DEFAULT_PORTS["exporter"]),
        prometheus_port=_port(env, "PROMETHEUS_PORT", DEFAULT_PORTS["prometheus"]),
        alertmanager_port=_port(env, "ALERTMANAGER_PORT", DEFAULT_PORTS["alertmanager"]),
        receiver_port=_port(env, "RECEIVER_PORT", DEFAULT_PORTS["receiver"]),
        alert_profile=profile,
        ha=env.get("HA") == "1",
        prometheus_b_port=_port(env, "PROMETHEUS_B_PORT", HA_PORTS["prometheus-b"]),
        alertmanager_b_port=_port(env, "ALERTMANAGER_B_PORT", HA_PORTS["alertmanager-b"]),
        alertmanager_cluster_port=_port(env, "ALERTMANAGER_CLUSTER_PORT", DEFAULT_CLUSTER_PORTS["alertmanager"]),
        alertmanager_b_cluster_port=_port(env, "ALERTMANAGER_B_CLUSTER_PORT", DEFAULT_CLUSTER_PORTS["alertmanager-b"]),
        broker_name=broker_name,
        management_url=env.get("RABBITMQ_MANAGEMENT_URL") or None,
    )


def flower_basic_auth(run_dir: Path) -> str:
    """FLOWER_BASIC_AUTH from the environment, else one generated once and kept in run/."""
    if os.environ.get("FLOWER_BASIC_AUTH"):
        return os.environ["FLOWER_BASIC_AUTH"]
    path = run_dir / "flower-basic-auth"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(f"admin:{secrets.token_urlsafe(18)}\n")
    return path.read_text().strip()
