"""The highly available alerting topology for tests: the test stack (native/child_stack.py) with
the component table's HA instances (native/ha.py): prometheus and prometheus-b, alertmanager and
alertmanager-b in one cluster, each a row of native/components.py run on free ports of 127.0.0.1
with the stack's short timings. No worker (the backlogs are in queues nobody consumes) and no
Flower: only what alerting needs runs."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import requests

from native import ha, health
from tests.support.procs import wait_until
from tests.support.stack import LocalStack

BACKLOG = "CeleryQueueBacklog"
NOT_STARTED = ("worker", "flower")


class HATopology(LocalStack):
    def __init__(self, tmp: Path, peer_timeout: str = "1s", alert_for: str = "5s") -> None:
        super().__init__(tmp, alert_for=alert_for, ha_alerting=True, peer_timeout=peer_timeout)

    def start(self, defer: tuple[str, ...] = NOT_STARTED) -> HATopology:
        super().start(defer=defer)
        try:
            for name in self.instances:
                self.wait_instance(name)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def instances(self) -> list[str]:
        return [name for kind in ha.KINDS for name in ha.INSTANCES[kind]]

    def prom(self, replica: str) -> str:
        return self.url(ha.instance("prometheus", replica))

    def am(self, replica: str) -> str:
        return self.url(ha.instance("alertmanager", replica))

    # -- lifecycle ---------------------------------------------------------------------------
    def signal(self, name: str, sig: int) -> float:
        """Send `sig` to one instance's process; returns the time.time() it was sent."""
        self.procs[name].kill(sig)
        if sig == signal.SIGKILL:
            self.procs[name].popen.wait(timeout=10)
        return time.time()

    def restart_instance(self, name: str) -> None:
        """Start an instance again, with its row's command line, on its data folder."""
        self.start_component(name, wait=False)
        self.wait_instance(name)

    def wait_instance(self, name: str, timeout: float = 40) -> None:
        """An Alertmanager: in a settled cluster of all (table probe healthy). A Prometheus:
        ready, sending to every Alertmanager and scraping the exporter."""
        if name in ha.INSTANCES["alertmanager"]:
            self.wait_ready(name, timeout, healthy=True)
            return
        self.wait_ready(name, timeout)
        url = self.url(name)
        wait_until(lambda: self.alertmanagers_of(url) == len(ha.REPLICAS), timeout, f"{name} sends to both")
        wait_until(lambda: self._query(url, 'up{job="celery-queue-exporter"} == 1'), timeout, f"{name} scraping")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        super().stop()

    # -- load --------------------------------------------------------------------------------
    def backlog(self, queue: str) -> None:
        """Just over CeleryQueueBacklog's threshold of waiting tasks, in a queue nobody consumes."""
        self.publish("--queue", queue, "--count", "1001")

    def drain(self, queue: str) -> None:
        self.redis.client().delete(queue)

    # -- observations ------------------------------------------------------------------------
    def notifications(self, queue: str, status: str = "firing", alertname: str = BACKLOG) -> list[dict[str, Any]]:
        """What the receiver got for `alertname` on `queue` with `status`, one entry per alert,
        each with `sender`: the Alertmanager that sent it (from the payload's externalURL)."""
        senders = {f":{self.ports[name]}/": name for name in ha.INSTANCES["alertmanager"]}
        out = []
        for record in self.receiver_records():
            url = record["payload"].get("externalURL", "").rstrip("/") + "/"
            sender = next((name for tail, name in senders.items() if url.endswith(tail)), url)
            for alert in record["payload"]["alerts"]:
                labels = alert["labels"]
                if (labels.get("alertname"), labels.get("queue_name"), alert["status"]) == (alertname, queue, status):
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
        silences = requests.get(self.am(replica) + "/api/v2/silences", timeout=5).json()
        return {s["id"]: s["status"]["state"] for s in silences}

    def cluster_ready(self, name: str) -> bool:
        probe = self.table[name].probe
        return probe is not None and health.run(probe).healthy

    @staticmethod
    def alertmanagers_of(prometheus_url: str) -> int:
        data = requests.get(prometheus_url + "/api/v1/alertmanagers", timeout=1).json()["data"]
        return len(data["activeAlertmanagers"])

    @staticmethod
    def _query(url: str, promql: str) -> list[dict[str, Any]]:
        reply = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5)
        return reply.json()["data"]["result"]
