"""The highly available alerting topology for tests: two Prometheus replicas and two clustered
Alertmanagers (native/ha.py) on top of the test stack's Redis, exporter and receiver.

Every instance is derived from the test stack (tests/support/stack.py): the replicas run the one
prometheus.yml it writes from the repository's (short intervals, rules of the test's `for:`),
the Alertmanagers the one alertmanager.yml (short group timings), with the command lines it
prepared; only their addresses, storage folders, replica label and cluster flags differ."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import requests

from native import ha
from tests.support.procs import Proc, free_port, wait_until
from tests.support.stack import LocalStack

BACKLOG = "CeleryQueueBacklog"


class HATopology:
    """redis, exporter and receiver of a LocalStack; prometheus-a/b and alertmanager-a/b."""

    def __init__(self, tmp: Path, peer_timeout: str = "1s", alert_for: str = "5s") -> None:
        self.tmp = tmp
        self.peer_timeout = peer_timeout
        self.stack = LocalStack(tmp, alert_for=alert_for)
        self.ports = {ha.instance(c, r): free_port() for c in ("prometheus", "alertmanager") for r in ha.REPLICAS}
        self.cluster = {r: f"127.0.0.1:{free_port()}" for r in ha.REPLICAS}
        self.argv: dict[str, list[str]] = {}
        self.cwd: dict[str, Path | None] = {}
        self.procs: dict[str, Proc] = {}

    # -- addresses ---------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def prom(self, replica: str) -> str:
        return self.url(ha.instance("prometheus", replica))

    def am(self, replica: str) -> str:
        return self.url(ha.instance("alertmanager", replica))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HATopology:
        # The single Prometheus and Alertmanager are prepared (their config files and command
        # lines), never started; no worker (the backlogs are in queues nobody consumes), no Flower.
        self.stack.start(defer=("worker", "flower", "prometheus", "alertmanager"))
        try:
            self._derive()
            for name in self.argv:
                self.start_instance(name, wait=False)
            for name in self.argv:
                self.wait_ready(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _derive(self) -> None:
        specs = self.stack._specs  # the command lines the test stack prepared
        targets = self.tmp / "prometheus" / "targets"
        (targets / "prometheus.yml").write_text(ha.targets_file(self._addresses("prometheus")))
        (targets / "alertmanager.yml").write_text(ha.targets_file(self._addresses("alertmanager")))
        (targets / "flower.yml").write_text("[]\n")  # no Flower in this topology
        prom_argv, _ = specs["prometheus"]
        am_argv, am_dir = specs["alertmanager"]
        for replica in ha.REPLICAS:
            name = ha.instance("prometheus", replica)
            self.argv[name] = ha.with_flags(
                prom_argv,
                {
                    "--storage.tsdb.path": str(self.tmp / name / "data"),
                    "--web.listen-address": f"127.0.0.1:{self.ports[name]}",
                },
            )
            self.cwd[name] = None
        for replica in ha.REPLICAS:
            name = ha.instance("alertmanager", replica)
            argv = ha.with_flags(
                ha.without_cluster(am_argv),
                {
                    "--storage.path": str(self.tmp / name / "data"),
                    "--web.listen-address": f"127.0.0.1:{self.ports[name]}",
                },
            )
            self.argv[name] = argv + ha.alertmanager_cluster_args(replica, self.cluster, peer_timeout=self.peer_timeout)
            self.cwd[name] = am_dir

    def _addresses(self, component: str) -> list[str]:
        return [f"127.0.0.1:{self.ports[ha.instance(component, r)]}" for r in ha.REPLICAS]

    def start_instance(self, name: str, wait: bool = True) -> Proc:
        old = self.procs.get(name)
        if old is not None:
            old.stop()
        env = {**self.stack.env, ha.REPLICA_ENV: name.rsplit("-", 1)[1]}
        proc = self.procs[name] = Proc(name, self.argv[name], self.stack.logs, env=env, cwd=self.cwd[name])
        if wait:
            self.wait_ready(name)
        return proc

    def signal(self, name: str, sig: int) -> float:
        """Send `sig` to one instance's process; returns the time.time() it was sent."""
        self.procs[name].kill(sig)
        if sig == signal.SIGKILL:
            self.procs[name].popen.wait(timeout=10)
        return time.time()

    def wait_ready(self, name: str, timeout: float = 40) -> None:
        if name.startswith("prometheus"):
            url = self.url(name)
            wait_until(lambda: requests.get(url + "/-/ready", timeout=1).ok, timeout, f"{name} ready")
            wait_until(lambda: self.alertmanagers_of(url) == len(ha.REPLICAS), timeout, f"{name} sends to both")
            wait_until(lambda: self._query(url, 'up{job="celery-queue-exporter"} == 1'), timeout, f"{name} scraping")
        else:
            wait_until(lambda: self.cluster_ready(name), timeout, f"{name} in a settled cluster of two")

    def cluster_ready(self, name: str) -> bool:
        """The instance answers, sees every peer, and its gossip has settled (before that it
        holds its notifications back)."""
        status = requests.get(self.url(name) + "/api/v2/status", timeout=1).json()["cluster"]
        return status["status"] == "ready" and len(status.get("peers") or []) == len(ha.REPLICAS)

    def healthy(self) -> bool:
        return all(p.alive() for p in self.procs.values()) and all(
            self.cluster_ready(ha.instance("alertmanager", r)) for r in ha.REPLICAS
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc.kill(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            proc.stop()
        self.stack.stop()

    def diagnostics(self) -> str:
        own = "\n".join(f"--- {n} (alive={p.alive()}) ---\n{p.log()[-3000:]}" for n, p in self.procs.items())
        return self.stack.diagnostics() + "\n" + own

    # -- load --------------------------------------------------------------------------------
    def backlog(self, queue: str) -> None:
        """Just over CeleryQueueBacklog's threshold of waiting tasks, in a queue nobody consumes."""
        self.stack.publish("--queue", queue, "--count", "1001")

    def drain(self, queue: str) -> None:
        self.stack.redis.client().delete(queue)

    # -- observations ------------------------------------------------------------------------
    def notifications(self, queue: str, status: str = "firing", alertname: str = BACKLOG) -> list[dict[str, Any]]:
        """What the receiver got for `alertname` on `queue` with `status`, one entry per alert,
        each with `sender`: the Alertmanager that sent it (from the payload's externalURL)."""
        senders = {f":{port}/": name for name, port in self.ports.items() if name.startswith("alertmanager")}
        out = []
        for record in self.stack.receiver_records():
            url = record["payload"].get("externalURL", "").rstrip("/") + "/"
            sender = next((name for tail, name in senders.items() if url.endswith(tail)), url)
            for alert in record["payload"]["alerts"]:
                labels = alert["labels"]
                if (
                    labels.get("alertname") == alertname
                    and labels.get("queue_name") == queue
                    and alert["status"] == status
                ):
                    out.append({**alert, "sender": sender, "received_unix": record.get("received_unix")})
        return out

    def alert_states(self, replica: str, queue: str, alertname: str = BACKLOG) -> set[str]:
        """pending / firing, as Prometheus replica `replica` has the alert for `queue` right now."""
        alerts = requests.get(self.prom(replica) + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return {
            a["state"]
            for a in alerts
            if a["labels"]["alertname"] == alertname and a["labels"].get("queue_name") == queue
        }

    def am_alerts(self, replica: str, queue: str, alertname: str = BACKLOG) -> list[dict[str, Any]]:
        alerts = requests.get(self.am(replica) + "/api/v2/alerts", timeout=5).json()
        return [
            a for a in alerts if a["labels"].get("alertname") == alertname and a["labels"].get("queue_name") == queue
        ]

    def silences(self, replica: str) -> dict[str, str]:
        """Silence id -> state, as Alertmanager `replica` has them."""
        return {
            s["id"]: s["status"]["state"] for s in requests.get(self.am(replica) + "/api/v2/silences", timeout=5).json()
        }

    def am_counter(self, replica: str, name: str) -> float:
        text = requests.get(self.am(replica) + "/metrics", timeout=5).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    @staticmethod
    def alertmanagers_of(prometheus_url: str) -> int:
        data = requests.get(prometheus_url + "/api/v1/alertmanagers", timeout=1).json()["data"]
        return len(data["activeAlertmanagers"])

    @staticmethod
    def _query(url: str, promql: str) -> list[dict[str, Any]]:
        reply = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5)
        return reply.json()["data"]["result"]
