"""The real stack for end-to-end tests: every component a real process on 127.0.0.1 and free
ports, reading the repository's own config files, with only the timings made short."""

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

from prometheus import file_sd, generate
from tests.support.procs import REPO, Proc, RedisServer, free_port, tool, wait_until

VENV_BIN = Path(sys.executable).parent
WORKER_QUEUES = "default,periodic_tasks,error_logs,warning_logs,transient_logs"
FLOWER_AUTH = "tester:e2e-secret-flower"


class LocalStack:
    """redis, Celery worker (+ optional beat), Flower, exporter, receiver, Alertmanager, Prometheus."""

    def __init__(
        self,
        tmp: Path,
        alert_for: str = "5s",
        interval: str = "1s",
        beat: bool = False,
        worker_queues: str = WORKER_QUEUES,
        extra_env: dict[str, str] | None = None,
        alerting: generate.AlertingConfig | None = None,
        *,
        redis: RedisServer | None = None,
        broker_url: str | None = None,
        exporter_broker_url: str | None = None,
        args: dict[str, list[str]] | None = None,
        broker_name: str = file_sd.DEFAULT_BROKER,
        more_brokers: Sequence[str] = (),
    ) -> None:
        """`redis`: a server to start instead of a plain RedisServer (e.g. one with passwords);
        `broker_url`: the URL workers, beat and Flower use (default: the server's), the result
        backend being its db 1; `exporter_broker_url`: the exporter's (default: `broker_url`);
        `args`: extra command-line arguments per component name; `alerting`: the alert rules'
        source (default prometheus/alerting.yml), rendered with every `for:` set to `alert_for`.
        `broker_name`: the `broker` label of the exporter's and Flower's targets; `more_brokers`:
        names of further brokers, each a redis-server of its own read by an exporter of its own
        (component `exporter-<name>`, target labelled with its name), with no worker or Flower.
        Alertmanager's group_wait / group_interval are `self.timings`, changeable before start()."""
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.alert_for = alert_for
        self.interval = interval
        self.beat = beat
        self.worker_queues = worker_queues
        self.timings = {"group_wait": "1s", "group_interval": "2s"}  # Alertmanager's, for every route
        self.ports = {name: free_port() for name in ("flower", "exporter", "prometheus", "alertmanager", "receiver")}
        self.redis = redis or RedisServer(self.logs)
        self.broker_name = broker_name
        # broker name -> its redis-server, the first one being `self.redis` (workers, Flower)
        self.brokers = {broker_name: self.redis, **{name: RedisServer(self.logs) for name in more_brokers}}
        for name in more_brokers:
            self.ports[self.exporter_of(name)] = free_port()
        self._broker_url = broker_url
        self._exporter_broker_url = exporter_broker_url
        self.args = args or {}
        self.deferred: set[str] = set()
        self._specs: dict[str, tuple[list[str], Path | None]] = {}
        self.procs: dict[str, Proc] = {}
        self.extra_env = extra_env or {}
        # prometheus/alerting.yml unless a test brings its own; every `for:` becomes alert_for
        self.alerting = alerting or generate.load()

    # -- addresses --------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def exporter_of(self, broker: str) -> str:
        """The component name of the exporter reading `broker`."""
        return "exporter" if broker == self.broker_name else f"exporter-{broker}"

    @property
    def broker_url(self) -> str:
        return self._broker_url or self.redis.url

    @property
    def env(self) -> dict[str, str]:
        return {
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.broker_url.rsplit("/", 1)[0] + "/1",
            "FLOWER_BASIC_AUTH": FLOWER_AUTH,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    # -- configuration derived from the repository's files ---------------------------------
    def _prometheus_config(self) -> Path:
        root = self.tmp / "prometheus"
        (root / "targets").mkdir(parents=True)
        (root / "rules").mkdir()
        config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
        config["global"].update(
            scrape_interval=self.interval, evaluation_interval=self.interval, scrape_timeout=self.interval
        )
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        generate.write_profile(self.alerting, generate.uniform(self.alert_for), root / "rules")
        jobs = {"prometheus": "prometheus", "alertmanager": "alertmanager", "flower": "flower"}
        files = file_sd.target_files({job: [f"127.0.0.1:{self.ports[name]}"] for job, name in jobs.items()},
                                     self.broker_name)  # fmt: skip
        # One target group per broker, each exporter labelled with the broker it reads.
        exporters = [
            group
            for broker in self.brokers
            for group in file_sd.target_groups([f"127.0.0.1:{self.ports[self.exporter_of(broker)]}"], broker)
        ]
        files["celery-queue-exporter"] = yaml.safe_dump(exporters, sort_keys=False)
        for job, text in files.items():
            (root / "targets" / f"{job}.yml").write_text(text)
        return root / "prometheus.yml"

    def _alertmanager_dir(self) -> Path:
        root = self.tmp / "alertmanager"
        (root / "endpoints").mkdir(parents=True)
        config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        routes = [config["route"]]
        while routes:  # the root sets the timings; a child route that sets its own gets them too
            route = routes.pop()
            if route is config["route"] or "group_wait" in route:
                route["group_wait"] = self.timings["group_wait"]
            if route is config["route"] or "group_interval" in route:
                route["group_interval"] = self.timings["group_interval"]
            routes.extend(route.get("routes", []))
        (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
        (root / "endpoints" / "local-receiver-url").write_text(self.url("receiver") + "/\n")
        return root

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], cwd: Path | None = None) -> Proc | None:
        self._specs[name] = ([*argv, *self.args.get(name, [])], cwd)
        if name in self.deferred:
            return None
        return self.start_component(name, wait=False)

    def start(self, defer: Collection[str] = ()) -> LocalStack:
        """Start everything and wait until it is ready. Components named in `defer` (redis, worker,
        beat, flower, exporter, receiver, alertmanager, prometheus) are prepared but not started,
        and not waited for: start them later with start_component()."""
        self.deferred = set(defer)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def start_component(self, name: str, wait: bool = True) -> Proc | None:
        """Start (again) one component, with the command line it was prepared with."""
        self.deferred.discard(name)
        if name == "redis":
            self.redis.start()
            return None
        argv, cwd = self._specs[name]
        env = self.env
        if name == "exporter":  # in the environment, not on the command line: it may hold a password
            env["CELERY_EXPORTER_BROKER_URL"] = self._exporter_broker_url or self.broker_url
        elif name.startswith("exporter-"):
            env["CELERY_EXPORTER_BROKER_URL"] = self.brokers[name.removeprefix("exporter-")].url
        old = self.procs.get(name)
        if old is not None:
            old.stop()
        proc = self.procs[name] = Proc(name, argv, self.logs, env=env, cwd=cwd)
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

    def wait_ready(self, name: str, timeout: float = 30) -> None:
        checks = {
            "redis": lambda: self.redis.client().ping(),
            "worker": lambda: " ready." in self.procs["worker"].log(),
            "beat": lambda: self.procs["beat"].alive(),
            "flower": lambda: requests.get(self.url("flower") + "/healthcheck", timeout=1).text == "OK",
            "exporter": lambda: self.exporter_value("celery_broker_up") is not None,
            **{
                self.exporter_of(b): lambda b=b: self.exporter_value("celery_broker_up", broker=b) is not None
                for b in self.brokers
            },
            "receiver": lambda: requests.get(self.url("receiver") + "/-/healthy", timeout=1).ok,
            "alertmanager": lambda: requests.get(self.url("alertmanager") + "/-/ready", timeout=1).ok,
            "prometheus": lambda: requests.get(self.url("prometheus") + "/-/ready", timeout=1).ok,
        }
        wait_until(checks[name], timeout, name)

    def _start_all(self) -> None:
        if "redis" not in self.deferred:
            self.redis.start()
        for server in self.brokers.values():
            if server is not self.redis:
                server.start()
        celery = str(VENV_BIN / "celery")
        self._start(
            "worker",
            [
                celery,
                "-A",
                "workers.app",
                "worker",
                "-n",
                "e2e-worker@%h",
                "-Q",
                self.worker_queues,
                "-E",
                "--pool=threads",
                "--concurrency=4",
                "--loglevel=INFO",
            ],
        )
        if self.beat:
            self._start(
                "beat",
                [
                    celery,
                    "-A",
                    "workers.app",
                    "beat",
                    "--loglevel=INFO",
                    f"--schedule={self.tmp / 'celerybeat-schedule'}",
                ],
            )
        self._start(
            "flower",
            [
                celery,
                "-A",
                "workers.app",
                "flower",
                "--address=127.0.0.1",
                f"--port={self.ports['flower']}",
                "--conf=flower/flowerconfig.py",
            ],
        )
        for broker in self.brokers:
            self._start(
                self.exporter_of(broker),
                [
                    str(VENV_BIN / "celery-queue-exporter"),
                    "--address",
                    "127.0.0.1",
                    "--port",
                    str(self.ports[self.exporter_of(broker)]),
                    # workers per queue and celery_worker_up within a second, as the short intervals here
                    "--consumers-interval",
                    "1",
                ],
            )
        self._start(
            "receiver",
            [
                sys.executable,
                "-m",
                "receiver",
                "--port",
                str(self.ports["receiver"]),
                "--file",
                str(self.receiver_file),
            ],
        )
        am_dir = self._alertmanager_dir()
        self._start(
            "alertmanager",
            [
                tool("prometheus-alertmanager"),
                "--config.file=alertmanager.yml",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
            cwd=am_dir,
        )
        self._start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={self._prometheus_config()}",
                f"--storage.tsdb.path={self.tmp / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
            ],
        )
        if self.deferred:  # the caller starts the rest and waits for what it needs
            for name in ("flower", "exporter", "receiver", "alertmanager", "prometheus"):
                if name not in self.deferred:
                    self.wait_ready(name)
            return
        wait_until(lambda: requests.get(self.url("flower") + "/healthcheck", timeout=1).text == "OK", 30, "flower")
        for broker in self.brokers:
            up = lambda b=broker: self.exporter_value("celery_broker_up", broker=b) == 1  # noqa: E731
            wait_until(up, 30, self.exporter_of(broker))
        wait_until(lambda: requests.get(self.url("receiver") + "/-/healthy", timeout=1).ok, 10, "receiver")
        wait_until(lambda: requests.get(self.url("alertmanager") + "/-/ready", timeout=1).ok, 20, "alertmanager")
        wait_until(lambda: requests.get(self.url("prometheus") + "/-/ready", timeout=1).ok, 30, "prometheus")
        wait_until(
            lambda: self.targets_up() == {"prometheus", "alertmanager", "celery-queue-exporter", "flower"},
            30,
            "every Prometheus target up",
        )

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
            env["CELERY_BROKER_URL"] = self.brokers[broker].url
            env["CELERY_RESULT_BACKEND"] = self.brokers[broker].url.rsplit("/", 1)[0] + "/1"
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
