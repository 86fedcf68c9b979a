"""A private RabbitMQ node for tests and benchmarks: Debian's rabbitmq-server on free loopback ports.

The node has its own name, AMQP, distribution and management ports, data and log folders,
Erlang cookie (its own HOME) and environment file, so it never meets the machine's own node
(rabbit@localhost on 5672). It runs Debian's scripts from /usr/lib/rabbitmq/bin directly, as
the current user: the /usr/sbin wrappers would switch to the `rabbitmq` user and share the
machine's cookie. Management numbers are sampled every second (5 s by default) so tests wait less.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from native.processes import Proc, free_port, wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT = 60.0
STATS_INTERVAL_MS = 1000  # management numbers sampled every second (5 s by default)


class RabbitMQNode:
    """One rabbitmq-server child process with the management plugin; stopped by rabbitmqctl and pid."""

    def __init__(
        self, base_dir: Path, name: str | None = None, plugins: tuple[str, ...] = ("rabbitmq_management",)
    ) -> None:
        self.base_dir = base_dir
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port()
        self.nodename = f"{name or 'test'}-{self.amqp_port}@localhost"
        self.plugins = plugins
        self.prometheus_port = free_port()  # rabbitmq_prometheus, when among the plugins
        self.admin_user = "admin"
        self.admin_password = secrets.token_hex(12)
        self.proc: Proc | None = None
        self.started_in: float | None = None  # seconds from spawn to a ready management API

    # --- addresses -------------------------------------------------------------------------
    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def amqp_url(self, vhost: str = "/", user: str | None = None, password: str | None = None) -> str:
        """Celery's broker URL for a vhost (quoted, so "/" is %2F)."""
        user = user or self.admin_user
        password = self.admin_password if password is None else password
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"amqp://{credentials}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    # --- lifecycle -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        d = self.base_dir
        return {
            "HOME": str(d / "home"),  # where the Erlang cookie of this node and its CLI lives
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "data"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "data" / "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),  # without .conf, as RabbitMQ wants it
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # in case this node is the one that starts epmd
        }

    def _write_files(self) -> None:
        d = self.base_dir
        for sub in ("home", "data", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            f"collect_statistics_interval = {STATS_INTERVAL_MS}\n"
            f"loopback_users = none\n"
            f"default_user = {self.admin_user}\n"
            f"default_pass = {self.admin_password}\n"
            "default_user_tags.administrator = true\n"
            + (
                f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {self.prometheus_port}\n"
                if "rabbitmq_prometheus" in self.plugins
                else ""
            )
        )

    def start(self) -> RabbitMQNode:
        server = RABBITMQ_BIN / "rabbitmq-server"
        if not server.exists():
            raise RuntimeError(f"{server} is missing: install Debian's rabbitmq-server (make tools)")
        if self.proc is None:
            self._write_files()
        started = time.monotonic()
        self.proc = Proc(f"rabbitmq-{self.amqp_port}", [str(server)], self.base_dir, env=self._env())
        proc = self.proc
        try:
            wait_until(lambda: not proc.alive() or self.ready(), START_TIMEOUT, f"rabbitmq node {self.nodename}", 0.2)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{proc.log()[-3000:]}") from None
        if not proc.alive():
            raise RuntimeError(f"rabbitmq-server exited while starting:\n{proc.log()[-3000:]}")
        self.started_in = time.monotonic() - started
        return self

    def ready(self) -> bool:
        """The management API answers and the AMQP listener is up."""
        status, _ = self.api("GET", "/api/overview", timeout=2)
        return status == 200

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against this node only (its own name and cookie)."""
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env={**os.environ, **self._env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def stop(self, graceful: bool = True) -> None:
        """`rabbitmqctl stop`, then TERM and KILL by pid; graceful=False only kills (a throwaway node)."""
        proc = self.proc
        if proc is None:
            return
        if not graceful:
            # SIGTERM would not do: Debian's script traps it and runs a graceful `rabbitmqctl stop`.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        elif proc.alive():
            try:
                self.ctl("stop", timeout=30, check=False)
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        proc.stop()  # TERM then KILL of its process group, by pid

    # --- management API as the administrator ----------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        user = user or self.admin_user
        password = self.admin_password if password is None else password
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.management_url + path, data=data, method=method)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = self.api(method, path, body)
        if status not in (200, 201, 204):
            raise RuntimeError(f"{method} {path}: HTTP {status}: {reply}")
        return reply

    def add_vhost(self, vhost: str) -> None:
        self._ok("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
        self.set_permissions(vhost, self.admin_user, ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self._ok("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")

    def add_user(self, user: str, password: str, tags: str = "") -> None:
        self._ok("PUT", f"/api/users/{quote(user, safe='')}", {"password": password, "tags": tags})

    def set_permissions(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        path = f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}"
        self._ok("PUT", path, {"configure": configure, "write": write, "read": read})

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        return self._ok("GET", f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")

    def declare_queue(self, vhost: str, name: str, arguments: dict[str, Any] | None = None) -> None:
        path = f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
        self._ok("PUT", path, {"durable": True, "arguments": arguments or {}})

    def wait_stats(self, vhost: str, name: str, timeout: float = 15, **expected: int) -> dict[str, Any]:
        """Wait until the sampled management numbers of a queue show `expected` (e.g. messages_ready=40)."""
        last: list[dict[str, Any]] = [{}]

        def check() -> dict[str, Any] | None:
            last[0] = self.queue(vhost, name)
            return last[0] if all(last[0].get(k) == v for k, v in expected.items()) else None

        try:
            return wait_until(check, timeout, f"{name} in {vhost} with {expected}", 0.25)  # type: ignore[return-value]
        except TimeoutError as exc:
            seen = {k: last[0].get(k) for k in expected}
            raise AssertionError(f"queue {name!r}: {seen}, expected {expected}") from exc
