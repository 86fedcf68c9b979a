"""up / status / down of the native stack: prepare run/, start supervisord, wait, report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
import yaml

from alertmanager import channels
from native import components, ha, health, supervisord
from native.components import Component, Layout
from native.settings import HOST, REPO, TOOLS_BIN, VENV_BIN, Settings, flower_basic_auth, load
from native.supervisor_client import Supervisor

UP_TIMEOUT_S = 120


def state_file(run_dir: Path) -> Path:
    return run_dir / "stack.json"


def saved_settings() -> Settings:
    """The settings `up` used, so status/down/demo talk to the stack that really runs."""
    fresh = load()
    path = state_file(fresh.run_dir)
    if not path.exists():
        return fresh
    saved = json.loads(path.read_text())
    return Settings(**{**saved, "run_dir": Path(saved["run_dir"])})


def supervisor(s: Settings) -> Supervisor:
    return Supervisor(s.run_dir / "supervisor.sock")


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def layout(s: Settings) -> Layout:
    return Layout(
        run_dir=s.run_dir,
        broker_url=s.broker_url,
        management_url=s.management_url,
        broker_name=s.broker_name,
        flower_basic_auth=flower_basic_auth(s.run_dir),
        ports=s.ports,
        venv_bin=VENV_BIN,
        tools_bin=TOOLS_BIN,
        instances=ha.INSTANCES if s.ha else {},
        alertmanager_cluster=s.cluster_ports,
    )


def table(s: Settings) -> dict[str, Component]:
    return components.table(layout(s))


def prepare_run_dir(s: Settings) -> list[str]:
    """Lay out run/ so Prometheus and Alertmanager read the repo's own config files, with the
    addresses of this deployment beside them (what prometheus/targets/compose is for compose).
    Returns the notification channels configured from the environment."""
    comps = table(s)
    (s.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    for c in comps.values():
        (s.run_dir / c.name).mkdir(parents=True, exist_ok=True)
    prom_config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    receiver_url = next(c.url for c in comps.values() if c.kind == "receiver")
    configured: list[str] = []
    for c in comps.values():
        folder = s.run_dir / c.name
        if c.kind == "prometheus":
            _link(REPO / "prometheus" / "prometheus.yml", folder / "prometheus.yml")
            _link(REPO / "prometheus" / s.rules_dir, folder / "rules")
            components.write_targets(folder, prom_config, comps)
        elif c.kind == "alertmanager":
            # alertmanager/alertmanager.yml plus the Slack/email/webhook channels set in ALERT_*
            # variables (secrets in files beside it); with none set, the repository's file as it is.
            if (folder / "alertmanager.yml").is_symlink():
                (folder / "alertmanager.yml").unlink()
            configured = channels.write(folder, channels.BASE_CONFIG, os.environ)
            (folder / "endpoints").mkdir(exist_ok=True)
            (folder / "endpoints" / "local-receiver-url").write_text(f"{receiver_url}/\n")
    data = {k: str(v) if isinstance(v, Path) else v for k, v in s.__dict__.items()}
    state_file(s.run_dir).write_text(json.dumps(data, indent=2) + "\n")
    return configured


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def rabbitmq_problem(s: Settings, broker: Component) -> str | None:
    """None when the RabbitMQ of the broker URL answers with its management API (which the
    exporter reads); else one line saying what is wrong. The machine's own node (local, port
    5672) gets the management plugin enabled when we are root, as `make up` installs what it needs."""
    assert broker.probe is not None
    status = health.run(broker.probe)
    if status.healthy:
        return None
    where = s.broker_url_display
    amqp = urlsplit(s.broker_url)
    host, port = amqp.hostname or HOST, amqp.port or (5671 if amqp.scheme.endswith("s") else 5672)
    if status.state != "rabbitmq_unreachable":
        return f"RabbitMQ's management API at {broker.url} does not list the queues of {where} ({status.state})"
    if not tcp_answers(host, port):
        return f"no RabbitMQ answers at {where}: start it, or use a redis:// CELERY_BROKER_URL"
    own_node = host in ("127.0.0.1", "localhost") and port == 5672 and s.management_url is None
    plugins = shutil.which("rabbitmq-plugins")
    if own_node and plugins and os.geteuid() == 0:
        print("Enabling rabbitmq_management on the local RabbitMQ (rabbitmq-plugins enable) ...")
        done = subprocess.run([plugins, "enable", "rabbitmq_management"], capture_output=True, text=True, timeout=120)
        deadline = time.monotonic() + 60
        while done.returncode == 0 and time.monotonic() < deadline:
            if health.run(broker.probe).healthy:
                return None
            time.sleep(1)
    return (
        f"RabbitMQ answers at {where} but its management API does not at {broker.url} (the exporter reads "
        "queues through it): run `rabbitmq-plugins enable rabbitmq_management` as root, or set RABBITMQ_MANAGEMENT_URL"
    )


def tcp_answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def rows(s: Settings) -> list[health.Row]:
    sup = supervisor(s)
    procs = sup.processes() if sup.running() else {}
    out: list[health.Row] = []
    for c in table(s).values():
        statename = procs.get(c.name, {}).get("statename", "not running")
        url = s.broker_url_display if c.kind == "redis" else c.url
        if c.kind in ("redis", "rabbitmq") and statename != "RUNNING":
            status = health.run(c.probe)  # a broker the stack found running and reuses
            state = f"{status.state} (reused)" if status.healthy else status.state
            out.append(health.Row(c.name, status.healthy, state, url))
        elif statename != "RUNNING":
            out.append(health.Row(c.name, False, statename.lower(), url))
        elif c.probe is None:
            out.append(health.Row(c.name, True, "running", url))
        else:
            status = health.run(c.probe)
            out.append(health.Row(c.name, status.healthy, status.state, url))
    out.append(health.Row("grafana", True, "docker compose only (no Debian package)", "-"))
    return out


def print_table(table: list[health.Row]) -> None:
    width = max(len(r.component) for r in table)
    state_width = max(len(r.state) for r in table)
    print(f"{'component':<{width}}  {'state':<{state_width}}  url")
    for r in table:
        print(f"{r.component:<{width}}  {r.state:<{state_width}}  {r.url}")


def up() -> int:
    s = load()
    sup = supervisor(s)
    if sup.running():
        print("The stack is already running.")
        return status()
    missing = [b for b in ("prometheus", "prometheus-alertmanager") if not (TOOLS_BIN / b).exists()]
    if missing or not (s.on_rabbitmq or shutil.which("redis-server")):
        print(
            f"missing tools: {', '.join(missing or ['redis-server'])}; run native/install-tools.sh",
            file=sys.stderr,
        )
        return 1
    comps = table(s)
    if s.on_rabbitmq:
        problem = rabbitmq_problem(s, comps["rabbitmq"])
        if problem:
            print(problem, file=sys.stderr)
            return 1
        start_redis = False
        broker_note = f"reusing the RabbitMQ at {s.broker_url_display}"
    else:
        start_redis = not redis_answers(s.broker_url)
        if start_redis and urlsplit(s.broker_url).hostname not in ("127.0.0.1", "localhost"):
            print(
                f"no Redis answers at {s.broker_url_display} and it is not local, so the stack cannot start one",
                file=sys.stderr,
            )
            return 1
        if not start_redis:
            del comps["redis"]
        broker_note = f"{'starting a Redis' if start_redis else 'reusing the Redis'} at {s.broker_url_display}"
    comps = {name: c for name, c in comps.items() if c.managed}
    ports = {c.name: c.port for c in comps.values() if c.port is not None}
    ports.update({f"{name} (gossip)": port for name, port in s.cluster_ports.items()})
    taken = [f"{name}={port}" for name, port in ports.items() if port_taken(port)]
    if taken:
        print(f"ports already in use: {', '.join(taken)}; set other ports in the environment", file=sys.stderr)
        return 1
    try:
        configured = prepare_run_dir(s)
    except channels.ChannelError as exc:
        print(f"alert channels: {exc}", file=sys.stderr)
        return 2
    print(
        f"Starting the stack ({broker_note} as broker {s.broker_name}, alert profile {s.alert_profile}, "
        f"{'highly available alerting (2 Prometheus replicas, 2 Alertmanagers), ' if s.ha else ''}alert channels: "
        f"{'; '.join(configured) or 'local receiver only'}) ..."
    )
    try:
        report = launch(s, comps)
    except ValueError as exc:
        print(f"supervisord: {exc}", file=sys.stderr)
        return 2
    print()
    print_table(report)
    print()
    if not all(r.healthy for r in report):
        print(f"Not every component became healthy within {UP_TIMEOUT_S}s; logs: {s.run_dir / 'logs'}")
        return 1
    print(f"Flower login: {flower_basic_auth(s.run_dir)}   (from FLOWER_BASIC_AUTH or run/flower-basic-auth)")
    print(f"Logs: {s.run_dir / 'logs'}   Alerts received: {s.run_dir / 'receiver' / 'alerts.jsonl'}")
    print("Next: make demo (a backlog and its alert), make status, make down")
    return 0


def launch(s: Settings, comps: dict[str, Component]) -> list[health.Row]:
    """Start supervisord with `comps` (run_dir prepared) and wait up to UP_TIMEOUT_S for every
    component to be healthy; the last table. ValueError: a setting supervisord cannot carry."""
    conf = supervisord.write(comps.values(), s.run_dir)
    subprocess.run([str(VENV_BIN / "supervisord"), "-c", str(conf)], check=True)
    deadline = time.monotonic() + UP_TIMEOUT_S
    report = rows(s)
    while not all(r.healthy for r in report) and time.monotonic() < deadline:
        time.sleep(2)
        report = rows(s)
    return report


def status() -> int:
    s = saved_settings()
    if not supervisor(s).running():
        print("The stack is not running (start it with: make up).")
        return 1
    table = rows(s)
    print_table(table)
    return 0 if all(r.healthy for r in table) else 1


def down() -> int:
    s = saved_settings()
    if not supervisor(s).running():
        print("The stack is not running.")
        return 0
    stop(s)
    print("The stack is stopped; no process of it is left.")
    return 0


def stop(s: Settings) -> None:
    """Stop the supervisord of `s` and every program it runs, by their process ids."""
    sup = supervisor(s)
    pids = [p["pid"] for p in sup.processes().values() if p["pid"]]
    main_pid = sup.pid()
    sup.shutdown()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in [main_pid, *pids]):
        time.sleep(0.5)
    for pid in [p for p in pids if _alive(p)]:  # should not happen: supervisor stops groups
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its parent counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
