"""The real stack for end-to-end tests: every component a real process on 127.0.0.1 and free
ports, reading the repository's own config files, with only the timings made short."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from prometheus import demo_profile
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
    ) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.alert_for = alert_for
        self.interval = interval
        self.beat = beat
        self.worker_queues = worker_queues
        self.ports = {name: free_port() for name in ("flower", "exporter", "prometheus", "alertmanager", "receiver")}
        self.redis = RedisServer(self.logs)
        self.procs: dict[str, Proc] = {}
        self.extra_env = extra_env or {}

    # -- addresses --------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "CELERY_BROKER_URL": self.redis.url,
            "CELERY_RESULT_BACKEND": self.redis.url.replace("/0", "/1"),
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
        for rules in sorted((REPO / "prometheus" / "rules" / "production").glob("*.yml")):
            doc = yaml.safe_load(rules.read_text())
            durations = {r["alert"]: self.alert_for for g in doc["groups"] for r in g["rules"] if r.get("for")}
            (root / "rules" / rules.name).write_text(demo_profile.render(rules.read_text(), durations))
        jobs = {
            "prometheus": "prometheus",
            "alertmanager": "alertmanager",
            "celery-queue-exporter": "exporter",
            "flower": "flower",
        }
        for job, name in jobs.items():
            (root / "targets" / f"{job}.yml").write_text(f"- targets: ['127.0.0.1:{self.ports[name]}']\n")
        return root / "prometheus.yml"

    def _alertmanager_dir(self) -> Path:
        root = self.tmp / "alertmanager"
        (root / "endpoints").mkdir(parents=True)
        config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        config["route"].update(group_wait="1s", group_interval="2s")
        (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
        (root / "endpoints" / "local-receiver-url").write_text(self.url("receiver") + "/\n")
        return root

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], cwd: Path | None = None) -> Proc:
        proc = Proc(name, argv, self.logs, env=self.env, cwd=cwd)
        self.procs[name] = proc
        return proc

    def start(self) -> LocalStack:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        self.redis.start()
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
        self._start(
            "exporter",
            [
                str(VENV_BIN / "celery-queue-exporter"),
                "--broker-url",
                self.redis.url,
                "--address",
                "127.0.0.1",
                "--port",
                str(self.ports["exporter"]),
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
        wait_until(lambda: requests.get(self.url("flower") + "/healthcheck", timeout=1).text == "OK", 30, "flower")
        wait_until(lambda: self.exporter_value("celery_broker_up") == 1, 30, "exporter")
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
        self.redis.stop()

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} (alive={p.alive()}) ---\n{p.log()[-3000:]}" for name, p in self.procs.items())

    # -- observations ----------------------------------------------------------------------
    @property
    def receiver_file(self) -> Path:
        return self.tmp / "receiver" / "alerts.jsonl"

    def exporter_metrics(self) -> str:
        return requests.get(self.url("exporter") + "/metrics", timeout=5).text

    def exporter_value(self, name: str, **labels: str) -> float | None:
        """One sample of the exporter's /metrics, parsed, or None when it is absent."""
        for family in text_string_to_metric_families(self.exporter_metrics()):
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
