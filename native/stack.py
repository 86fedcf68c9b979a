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

from alertmanager import channels
from native import health
from native.settings import CONF, HOST, REPO, TOOLS_BIN, VENV_BIN, Settings, flower_basic_auth, load
from native.supervisor_client import Supervisor
from prometheus import file_sd

PROGRAMS = ["redis", "worker", "beat", "flower", "exporter", "prometheus", "alertmanager", "receiver"]
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


def prepare_run_dir(s: Settings) -> list[str]:
    """Lay out run/ so Prometheus and Alertmanager read the repo's own config files, with the
    addresses of this deployment beside them (what prometheus/targets/compose is for compose).
    Returns the notification channels configured from the environment."""
    for sub in ("logs", "redis", "beat", "receiver", "prometheus/targets", "alertmanager/endpoints"):
        (s.run_dir / sub).mkdir(parents=True, exist_ok=True)
    prom = s.run_dir / "prometheus"
    _link(REPO / "prometheus" / "prometheus.yml", prom / "prometheus.yml")
    _link(REPO / "prometheus" / s.rules_dir, prom / "rules")
    ports = {
        "prometheus": s.prometheus_port,
        "alertmanager": s.alertmanager_port,
        "celery-queue-exporter": s.exporter_port,
        "flower": s.flower_port,
    }
    # The exporter's and Flower's targets carry the broker's name (BROKER_NAME) as `broker`.
    files = file_sd.target_files({job: [f"{HOST}:{port}"] for job, port in ports.items()}, s.broker_name)
    for job, text in files.items():
        (prom / "targets" / f"{job}.yml").write_text(text)
    am = s.run_dir / "alertmanager"
    # alertmanager/alertmanager.yml plus the Slack/email/webhook channels set in ALERT_*
    # variables (secrets in files beside it); with none set, the repository's file as it is.
    if (am / "alertmanager.yml").is_symlink():
        (am / "alertmanager.yml").unlink()
    configured = channels.write(am, channels.BASE_CONFIG, os.environ)
    (am / "endpoints" / "local-receiver-url").write_text(f"{s.url('receiver')}/\n")
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


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def supervisord_env(s: Settings, start_redis: bool) -> dict[str, str]:
    return {
        **os.environ,
        "STACK_REPO": str(REPO),
        "STACK_RUN_DIR": str(s.run_dir),
        "STACK_VENV_BIN": str(VENV_BIN),
        "STACK_TOOLS_BIN": str(TOOLS_BIN),
        "STACK_START_REDIS": "true" if start_redis else "false",
        "REDIS_PORT": str(s.redis_port),
        "CELERY_BROKER_URL": s.broker_url,
        "CELERY_EXPORTER_BROKER_URL": s.broker_url,  # not on the exporter's command line: see supervisord.conf
        "FLOWER_PORT": str(s.flower_port),
        "EXPORTER_PORT": str(s.exporter_port),
        "PROMETHEUS_PORT": str(s.prometheus_port),
        "ALERTMANAGER_PORT": str(s.alertmanager_port),
        "RECEIVER_PORT": str(s.receiver_port),
        "FLOWER_BASIC_AUTH": flower_basic_auth(s.run_dir),
        "PYTHONUNBUFFERED": "1",
    }


HTTP_COMPONENTS = ("flower", "exporter", "prometheus", "alertmanager", "receiver")


def rows(s: Settings) -> list[health.Row]:
    sup = supervisor(s)
    procs = sup.processes() if sup.running() else {}
    out: list[health.Row] = []
    for name in PROGRAMS:
        statename = procs.get(name, {}).get("statename", "not running")
        url = s.url(name) if name in HTTP_COMPONENTS else s.broker_url_display if name == "redis" else ""
        if name == "redis" and statename != "RUNNING":
            ok, state = health.probe("redis", s)  # a Redis the stack found running and reuses
            out.append(health.Row(name, ok, f"{state} (reused)" if ok else state, url))
        elif statename != "RUNNING":
            out.append(health.Row(name, False, statename.lower(), url))
        elif name == "worker":
            out.append(health.Row(name, *check_worker(s), url))
        elif name == "beat":
            out.append(health.Row(name, True, "running", url))
        else:
            out.append(health.Row(name, *health.probe(name, s), url))
    out.append(health.Row("grafana", True, "docker compose only (no Debian package)", "-"))
    return out


def check_worker(s: Settings) -> tuple[bool, str]:
    os.environ["CELERY_BROKER_URL"] = s.broker_url
    from workers.app import app

    try:
        replies = app.control.ping(timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - any broker trouble means "not answering"
        return False, f"ping failed: {type(exc).__name__}"
    return (True, f"healthy, {len(replies)} worker(s) answer ping") if replies else (False, "no ping reply")


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
    if missing or not shutil.which("redis-server"):
        print(
            f"missing tools: {', '.join(missing or ['redis-server'])}; run native/install-tools.sh",
            file=sys.stderr,
        )
        return 1
    start_redis = not redis_answers(s.broker_url)
    if start_redis and urlsplit(s.broker_url).hostname not in ("127.0.0.1", "localhost"):
        print(
            f"no Redis answers at {s.broker_url_display} and it is not local, so the stack cannot start one",
            file=sys.stderr,
        )
        return 1
    ports = {
        "FLOWER_PORT": s.flower_port,
        "EXPORTER_PORT": s.exporter_port,
        "PROMETHEUS_PORT": s.prometheus_port,
        "ALERTMANAGER_PORT": s.alertmanager_port,
        "RECEIVER_PORT": s.receiver_port,
    }
    if start_redis:
        ports["CELERY_BROKER_URL port"] = s.redis_port
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
        f"Starting the stack ({'starting a Redis' if start_redis else 'reusing the Redis'} at "
        f"{s.broker_url_display} as broker {s.broker_name}, alert profile {s.alert_profile}, alert channels: "
        f"{'; '.join(configured) or 'local receiver only'}) ..."
    )
    subprocess.run([str(VENV_BIN / "supervisord"), "-c", str(CONF)], env=supervisord_env(s, start_redis), check=True)
    deadline = time.monotonic() + UP_TIMEOUT_S
    table = rows(s)
    while not all(r.healthy for r in table) and time.monotonic() < deadline:
        time.sleep(2)
        table = rows(s)
    print()
    print_table(table)
    print()
    if not all(r.healthy for r in table):
        print(f"Not every component became healthy within {UP_TIMEOUT_S}s; logs: {s.run_dir / 'logs'}")
        return 1
    print(f"Flower login: {flower_basic_auth(s.run_dir)}   (from FLOWER_BASIC_AUTH or run/flower-basic-auth)")
    print(f"Logs: {s.run_dir / 'logs'}   Alerts received: {s.run_dir / 'receiver' / 'alerts.jsonl'}")
    print("Next: make demo (a backlog and its alert), make status, make down")
    return 0


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
    sup = supervisor(s)
    if not sup.running():
        print("The stack is not running.")
        return 0
    pids = [p["pid"] for p in sup.processes().values() if p["pid"]]
    main_pid = sup.pid()
    sup.shutdown()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in [main_pid, *pids]):
        time.sleep(0.5)
    for pid in [p for p in pids if _alive(p)]:  # should not happen: supervisor stops groups
        os.killpg(pid, signal.SIGKILL)
    print("The stack is stopped; no process of it is left.")
    return 0


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
