"""The real stack as child processes of the caller, for end-to-end tests and benchmarks: the
components of native/components.py, each a real process on 127.0.0.1 and a free port, reading
the repository's own config files, with only the timings made short (parameters of the
component table, not a second definition). `make up` runs the same rows under supervisord."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from native import components, ha, health
from native.components import Component, Layout
from native.processes import REPO, Proc, RedisServer, free_port, wait_until
from prometheus import file_sd, generate

FLOWER_AUTH = "tester:e2e-secret-flower"
HTTP_KINDS = ("flower", "exporter", "receiver", "alertmanager", "prometheus")


class StackRedis(RedisServer):
    """redis-server as native/components.py starts it, on a free port, with its folder in `run_dir`."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir / "logs")
        self.run_dir = run_dir

    def start(self) -> StackRedis:
        c = components.redis(Layout(run_dir=self.run_dir, broker_url=self.url), "redis")
        (self.run_dir / c.name).mkdir(parents=True, exist_ok=True)
        self.proc = Proc(f"redis-{self.port}", [*c.argv, *self.extra_args], self.log_dir, env=dict(c.env), cwd=c.cwd)
        wait_until(lambda: self.client().ping(), 10, f"redis-server on port {self.port}")
        return self


class LocalStack:
    """redis, Celery worker (+ optional beat), Flower, exporter, receiver, Alertmanager, Prometheus."""

    def __init__(
        self,
        tmp: Path,
        alert_for: str = "5s",
        interval: str = "1s",
        beat: bool = False,
        worker_queues: str | None = None,
        extra_env: dict[str, str] | None = None,
        alerting: generate.AlertingConfig | None = None,
        *,
        redis: RedisServer | None = None,
        broker_url: str | None = None,
        exporter_broker_url: str | None = None,
        args: dict[str, list[str]] | None = None,
        ha_alerting: bool = False,
        peer_timeout: str | None = None,
        broker_name: str = file_sd.DEFAULT_BROKER,
        more_brokers: Sequence[str] = (),
        management_url: str | None = None,
    ) -> None:
        """`redis`: a server to start instead of the table's (e.g. one with passwords);
        `broker_url`: the URL workers, beat and Flower use (default: the server's), the result
        backend being its db 1; `exporter_broker_url`: the exporter's (default: `broker_url`);
        `worker_queues`: the worker's -Q (default: every queue of the app); `args`: extra
        command-line arguments per component name (an `--x=y` replaces the table's `--x`);
        `alerting`: the alert rules' source (default prometheus/alerting.yml), rendered with
        every `for:` set to `alert_for`. Alertmanager's group_wait / group_interval are
        `self.timings`, changeable before start(). `broker_name`: the `broker` label of the
        exporter's and Flower's targets; `more_brokers`: names of further brokers, each a
        redis-server of its own read by an exporter of its own (`exporter-<name>`, its target
        labelled with that name), with no worker or Flower. `ha_alerting`: two Prometheus
        replicas and two clustered Alertmanagers (native/ha.py), with `peer_timeout` their
        --cluster.peer-timeout. On an amqp:// `broker_url` no Redis is started: the RabbitMQ
        node is the caller's, its management API at `management_url`."""
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.alert_for = alert_for
        self.interval = interval
        self.beat = beat
        self.worker_queues = worker_queues
        self.timings = {"group_wait": "1s", "group_interval": "2s"}  # Alertmanager's, for every route
        self.ha_alerting = ha_alerting
        instances = [n for names in ha.INSTANCES.values() for n in names] if ha_alerting else []
        self.ports = {name: free_port() for name in dict.fromkeys([*HTTP_KINDS, *instances])}
        self.cluster_ports = {n: free_port() for n in ha.INSTANCES["alertmanager"]} if ha_alerting else {}
        self.peer_timeout = peer_timeout
        self.redis = redis or StackRedis(tmp)
        self.broker_name = broker_name
        # broker name -> its redis-server; the first is `self.redis`, the workers' and Flower's
        self.brokers: dict[str, RedisServer] = {broker_name: self.redis}
        for name in more_brokers:
            self.brokers[name] = RedisServer(self.logs)
        self._broker_url = broker_url
        self._exporter_broker_url = exporter_broker_url
        self.management_url = management_url
        self.args = args or {}
        self.deferred: set[str] = set()
        self.table: dict[str, Component] = {}
        self.procs: dict[str, Proc] = {}
        self.extra_env = extra_env or {}
        # prometheus/alerting.yml unless a test brings its own; every `for:` becomes alert_for
        self.alerting = alerting or generate.load()
        for name in more_brokers:  # the port of each further broker's exporter
            self.ports[self.exporter_of(name)] = free_port()

    @property
    def layout(self) -> Layout:
        """The component table's parameters for this stack: free ports, short timings."""
        return Layout(
            run_dir=self.tmp,
            broker_url=self.broker_url,
            exporter_broker_url=self._exporter_broker_url,
            broker_name=self.broker_name,
            more_brokers={name: server.url for name, server in self.brokers.items() if server is not self.redis},
            management_url=self.management_url,
            flower_basic_auth=FLOWER_AUTH,
            ports=self.ports,
            worker_name="e2e-worker@%h",
            worker_queues=self.worker_queues,
            worker_concurrency=4,
            beat=self.beat,
            # workers per queue and celery_worker_up within a second, as the short intervals here
            exporter_consumers_interval=1,
            extra_args=self.args,
            extra_env=self.extra_env,
            instances=ha.INSTANCES if self.ha_alerting else {},
            alertmanager_cluster=self.cluster_ports,
            alertmanager_peer_timeout=self.peer_timeout,
        )

    # -- addresses --------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def exporter_of(self, broker: str) -> str:
        """The component name of the exporter reading `broker`."""
        return self.layout.exporter_of(broker)

    @property
    def broker_url(self) -> str:
        return self._broker_url or self.redis.url

    @property
    def env(self) -> dict[str, str]:
        """The environment of a producer of this stack (e.g. the load command)."""
        return {
            **self.layout.celery_env,
            "FLOWER_BASIC_AUTH": FLOWER_AUTH,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    # -- configuration derived from the repository's files ---------------------------------
    def _instances(self, kind: str) -> list[Path]:
        """The folder of every component of `kind` (one, or two with ha_alerting)."""
        return [self.tmp / c.name for c in self.table.values() if c.kind == kind]

    def _prometheus_config(self) -> None:
        config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
        config["global"].update(
            scrape_interval=self.interval, evaluation_interval=self.interval, scrape_timeout=self.interval
        )
        for root in self._instances("prometheus"):
            (root / "rules").mkdir(parents=True)
            (root / "prometheus.yml").write_text(yaml.safe_dump(config))
            generate.write_profile(self.alerting, generate.uniform(self.alert_for), root / "rules")
            components.write_targets(root, config, self.table)

    def _alertmanager_dir(self) -> None:
        config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        routes = [config["route"]]
        while routes:  # the root sets the timings; a child route that sets its own gets them too
            route = routes.pop()
            if route is config["route"] or "group_wait" in route:
                route["group_wait"] = self.timings["group_wait"]
            if route is config["route"] or "group_interval" in route:
                route["group_interval"] = self.timings["group_interval"]
            routes.extend(route.get("routes", []))
        for root in self._instances("alertmanager"):
            (root / "endpoints").mkdir(parents=True, exist_ok=True)
            (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
            (root / "endpoints" / "local-receiver-url").write_text(self.url("receiver") + "/\n")

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, defer: Collection[str] = ()) -> LocalStack:
        """Start everything and wait until it is healthy. Components named in `defer` (redis,
        worker, beat, flower, exporter, receiver, alertmanager, prometheus) are prepared but not
        started, and not waited for: start them later with start_component(); the others are
        then waited for until they answer (ready), not until they are healthy."""
        self.deferred = set(defer)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def start_component(self, name: str, wait: bool = True) -> Proc | None:
        """Start (again) one component, with the command line of its row in the table."""
        self.deferred.discard(name)
        if name == "redis":
            self.redis.start()
            return None
        c = self.table[name]
        old = self.procs.get(name)
        if old is not None:
            old.stop()
        proc = self.procs[name] = Proc(name, c.argv, self.logs, env=dict(c.env), cwd=c.cwd)
        if wait:
            self.wait_ready(name)
        return proc

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one component: SIGTERM and wait (a clean stop), or any other signal to its main
        process only (e.g. SIGKILL: a crash), then whatever is left of its process group."""
        if name == "redis":
            if sig != signal.SIGTERM and self.redis.proc is not None:
                self.redis.proc.kill(sig)
            self.redis.stop()
            return
        proc = self.procs[name]
        if sig != signal.SIGTERM:
            proc.kill(sig)
            proc.popen.wait(timeout=10)
        proc.stop()

    def restart(self, name: str, sig: int = signal.SIGTERM) -> Proc | None:
        self.stop_component(name, sig)
        return self.start_component(name)

    def wait_ready(self, name: str, timeout: float = 30, healthy: bool = False) -> None:
        """Until the component answers (its table probe says ready), or is `healthy` too."""
        if name == "redis":
            wait_until(lambda: self.redis.client().ping(), timeout, name)
            return
        probe = self.table[name].probe
        if probe is None:  # nothing to ask: running is ready
            wait_until(lambda: self.procs[name].alive(), timeout, name)
            return
        what = f"{name} {'healthy' if healthy else 'ready'}"
        last = health.NOT_READY

        def check() -> bool:
            nonlocal last
            last = health.run(probe)
            return last.healthy if healthy else last.ready

        try:
            wait_until(check, timeout, what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; its probe says: {last.state}") from None

    def _start_all(self) -> None:
        self.table = components.table(self.layout)
        for c in self.table.values():
            (self.tmp / c.name).mkdir(parents=True, exist_ok=True)
        for server in self.brokers.values():
            if server is not self.redis:
                server.start()
        self._alertmanager_dir()
        self._prometheus_config()
        for name in self.table:
            if name in self.deferred or not self.table[name].managed:
                continue
            if name == "redis":
                self.redis.start()
            else:
                self.start_component(name, wait=False)
        started = [n for n, c in self.table.items() if n not in self.deferred and n != "redis" and c.managed]
        for name in started:  # every one was started at once; this waits for the slowest
            self.wait_ready(name, timeout=60 if name == "prometheus" else 30, healthy=not self.deferred)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        for server in self.brokers.values():
            server.stop()

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} (alive={p.alive()}) ---\n{p.log()[-3000:]}" for name, p in self.procs.items())

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalStack]:
        """Start, hand the stack to the test, print every component's log if the test fails, stop."""
        self.start()
        try:
            yield self
        except BaseException:
            print(self.diagnostics())
            raise
        finally:
            self.stop()

    # -- load ------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 120, broker: str | None = None) -> str:
        """Run a command of the workers app (e.g. the load command) against this stack's broker, or
        against `broker` (one of `more_brokers`)."""
        env = {**os.environ, **self.env}
        if broker is not None and broker != self.broker_name:
            url = self.brokers[broker].url
            env.update(CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url.rsplit("/", 1)[0] + "/1")
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{argv} failed: {result.stderr}"
        return result.stdout

    def publish(self, *load_args: str, broker: str | None = None) -> str:
        """`python -m workers.load ARGS`, e.g. publish("--queue", "q", "--count", "1001"), to this
        stack's broker or to `broker`."""
        return self.run([sys.executable, "-m", "workers.load", *load_args], broker=broker)

    # -- observations ----------------------------------------------------------------------
    @property
    def receiver_file(self) -> Path:
        return self.tmp / "receiver" / "alerts.jsonl"

    def exporter_metrics(self, broker: str | None = None) -> str:
        """The /metrics of the exporter reading `broker` (default: the first broker's)."""
        return requests.get(self.url(self.exporter_of(broker or self.broker_name)) + "/metrics", timeout=5).text

    def exporter_value(self, name: str, broker: str | None = None, **labels: str) -> float | None:
        """One sample of the /metrics of `broker`'s exporter, parsed, or None when it is absent."""
        for family in text_string_to_metric_families(self.exporter_metrics(broker)):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    def query(self, promql: str) -> list[dict[str, Any]]:
        reply = requests.get(self.url("prometheus") + "/api/v1/query", params={"query": promql}, timeout=10)
        reply.raise_for_status()
        return reply.json()["data"]["result"]

    def targets_up(self) -> set[str]:
        data = requests.get(self.url("prometheus") + "/api/v1/targets", timeout=5).json()["data"]
        return {t["labels"]["job"] for t in data["activeTargets"] if t["health"] == "up"}

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        return requests.get(self.url("prometheus") + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]

    def receiver_records(self) -> list[dict[str, Any]]:
        """The receiver's JSON lines as written: received_at, received_unix, payload."""
        if not self.receiver_file.exists():
            return []
        records = []
        for line in self.receiver_file.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
        return records

    def delivered(self) -> list[dict[str, Any]]:
        """Every alert the receiver got, flattened, each with the time it arrived."""
        if not self.receiver_file.exists():
            return []
        out = []
        for line in self.receiver_file.read_text().splitlines():
            record = json.loads(line)
            for alert in record["payload"]["alerts"]:
                out.append({**alert, "received_at": record["received_at"]})
        return out
