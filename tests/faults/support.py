"""Shared by tests/faults and tests/security: the broker's Redis as docker-compose runs it, task
publishing, process facts from /proc, and the report every test prints (what it injected, what
it observed) and that the end of the run sums up."""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
import yaml
from celery import Celery

import workers.tasks  # noqa: F401 - registers the shared tasks with every app built here
from tests.support.procs import REPO, Proc, RedisServer, rss_kib, wait_until
from tests.support.stack import LocalStack
from workers.app import create_app
from workers.config import Settings

# -- the report --------------------------------------------------------------------------------


@dataclass
class Report:
    """What one test did to the stack and what the stack did: printed as it happens (pytest -s or a
    failure shows it) and summed up at the end of the run (see conftest.py)."""

    test: str
    lines: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def _say(self, kind: str, text: str) -> None:
        line = f"[{self.test}] {kind}: {text}"
        self.lines.append(line)
        print(line, flush=True)

    def injected(self, text: str) -> None:
        self._say("injected", text)

    def observed(self, text: str) -> None:
        self._say("observed", text)

    def figure(self, name: str, value: object, unit: str = "") -> None:
        """A measured number, for docs/reliability.md."""
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        self.figures[name] = f"{text}{(' ' + unit) if unit else ''}"
        self._say("measured", f"{name} = {self.figures[name]}")

    def lost(self, what: str, count: int) -> None:
        self.figures[f"lost: {what}"] = str(count)
        self._say("lost", f"{what}: {count}")


RESULTS: list[Report] = []


def summary_lines() -> list[str]:
    out = []
    for report in RESULTS:
        if not report.figures:
            continue
        out.append(report.test)
        out += [f"    {name}: {value}" for name, value in report.figures.items()]
    return out


# -- the compose Redis ---------------------------------------------------------------------------


def make_secret(kind: str) -> str:
    """A fresh, recognisable secret for one test: URL-safe and 16+ characters, as start.sh wants."""
    return f"e2e-{kind}-{secrets.token_hex(10)}"


class ComposeRedis(RedisServer):
    """redis-server started the way docker-compose.yml starts it: `sh redis/start.sh` with
    redis/redis.conf and the ACL users of redis/users.acl, the passwords from the environment;
    only the address (127.0.0.1, a free port) and the data folder differ. Its append-only file
    lives in `data_dir`, so a restart keeps what was queued, as the compose volume does."""

    def __init__(self, log_dir: Path, extra_args: Sequence[str] = ()) -> None:
        super().__init__(log_dir, extra_args=extra_args)
        self.password = make_secret("redis")
        self.exporter_password = make_secret("exporter")
        self.admin_password = make_secret("admin")
        self.data_dir = log_dir / f"redis-{self.port}-data"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def exporter_url(self) -> str:
        return f"redis://exporter:{self.exporter_password}@127.0.0.1:{self.port}/0"

    @property
    def secrets(self) -> list[str]:
        return [self.password, self.exporter_password, self.admin_password]

    def start(self) -> ComposeRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["sh", str(REPO / "redis" / "start.sh"), "--bind", "127.0.0.1", "--port", str(self.port)]
        env = {
            "REDIS_PASSWORD": self.password,
            "REDIS_EXPORTER_PASSWORD": self.exporter_password,
            "REDIS_ADMIN_PASSWORD": self.admin_password,
            "REDIS_ACL_FILE": str(self.log_dir / f"redis-{self.port}-users.acl"),
        }
        self.proc = Proc(f"redis-{self.port}", [*argv, *self.extra_args], self.log_dir, env=env, cwd=self.data_dir)
        wait_until(lambda: self.client().ping(), 20, f"redis-server (compose config) on port {self.port}")
        return self

    def client(self, db: int = 0, user: str | None = None) -> redis.Redis:
        password = {"exporter": self.exporter_password, "admin": self.admin_password}.get(user or "", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, username=user, password=password, socket_timeout=5)

    def acl_log(self) -> list[dict[str, str]]:
        """Commands and keys Redis refused (ACL LOG), newest first."""
        entries = []
        for raw in self.client(user="admin").execute_command("ACL", "LOG", "128"):
            entry = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
            entries.append({_text(k): _text(v) for k, v in entry.items()})
        return entries


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def compose_stack(tmp: Path, redis_args: Sequence[str] = (), **kwargs) -> LocalStack:
    """A LocalStack on the compose Redis: workers, beat and Flower as the `default` user, the
    exporter as the read-only `exporter` user, both with passwords."""
    server = ComposeRedis(tmp / "logs", extra_args=redis_args)
    return LocalStack(tmp, redis=server, exporter_broker_url=server.exporter_url, **kwargs)


# -- tasks and alerts ----------------------------------------------------------------------------


def producer(stack: LocalStack) -> Celery:
    """The demo app as a producer in the test process, on the stack's broker and result backend."""
    backend = stack.env["CELERY_RESULT_BACKEND"]
    return create_app(Settings(broker_url=stack.broker_url, result_backend=backend))


def delivered(stack: LocalStack, alertname: str, status: str = "firing") -> list[dict]:
    """Notifications of `alertname` with `status` the receiver got, oldest first."""
    return [a for a in stack.delivered() if a["labels"].get("alertname") == alertname and a["status"] == status]


def delivered_at(stack: LocalStack, alertname: str, status: str = "firing", after: float = 0.0) -> float | None:
    """Unix time the receiver first got `alertname` with `status` at or after `after`, else None."""
    for record in stack.receiver_records():
        at = record.get("received_unix")
        if at is None:
            at = datetime.strptime(record["received_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        if at < after:
            continue
        for alert in record["payload"]["alerts"]:
            if alert["labels"].get("alertname") == alertname and alert["status"] == status:
                return float(at)
    return None


def firing(stack: LocalStack, alertname: str) -> list[dict]:
    """Alerts of that name firing in Prometheus right now."""
    return [a for a in stack.prometheus_alerts() if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def rule_exists(alertname: str) -> bool:
    """Whether the production rules define `alertname` (the tests read the real rule files)."""
    for path in (REPO / "prometheus" / "rules" / "production").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        if any(r.get("alert") == alertname for g in doc["groups"] for r in g["rules"]):
            return True
    return False


def publish(stack: LocalStack, queue: str | None, count: int, task: str = "add", *extra: str) -> float:
    """`python -m workers.load` against the stack; returns the seconds it took."""
    argv = [sys.executable, "-m", "workers.load", "--count", str(count), "--task", task, *extra]
    if queue:
        argv += ["--queue", queue]
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=REPO, env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return time.monotonic() - started


# -- processes -----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    return rss_kib(pid) * 1024


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", 4), ("tcp6", 6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            found.add((_address(address, family), int(port, 16)))
    return found


def _address(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    if family == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # each 32-bit word is little-endian
    return str(ipaddress.IPv6Address(b"".join(words)))
