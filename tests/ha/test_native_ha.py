"""`HA=1 make up`, `make status`, `make down` as a user runs them: the native runner starts the HA
topology of native/ha.py from the component table, on its own Redis, free ports and run folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from native import ha
from native.supervisor_client import Supervisor
from tests.faults.support import Report, listening_addresses
from tests.support.native import PORT_VARIABLES, alive, make, private_env, processes_with, states, supervised_pids

pytestmark = pytest.mark.slow

PORTS = {
    "prometheus": "PROMETHEUS_PORT",
    "prometheus-b": "PROMETHEUS_B_PORT",
    "alertmanager": "ALERTMANAGER_PORT",
    "alertmanager-b": "ALERTMANAGER_B_PORT",
}
GOSSIP = {"alertmanager": "ALERTMANAGER_CLUSTER_PORT", "alertmanager-b": "ALERTMANAGER_B_CLUSTER_PORT"}
HA_PORT_VARIABLES = (*(v for v in PORTS.values() if v not in PORT_VARIABLES), *GOSSIP.values())
EXPECTED = {
    # each replica scrapes both Prometheus, both Alertmanagers, the exporter and Flower
    "prometheus": "healthy, targets 6/6 up",
    "alertmanager": "healthy, cluster ready, 2/2 peers",
}


def check_table(stdout: str, env: dict[str, str]) -> None:
    table = states(stdout)
    for kind in ha.KINDS:
        for name in ha.INSTANCES[kind]:
            assert table.get(name) == EXPECTED[kind], f"{name}: {table.get(name)!r}\n{stdout}"
            url = f"http://127.0.0.1:{env[PORTS[name]]}"
            assert any(line.split()[:1] == [name] and line.endswith(url) for line in stdout.splitlines()), stdout
    assert all(state.startswith(("healthy", "running")) for name, state in table.items() if name != "grafana"), stdout


def test_ha_up_status_down(tmp_path: Path, report: Report) -> None:
    run_dir = tmp_path / "run"
    env = private_env(run_dir, PORT_VARIABLES + HA_PORT_VARIABLES, HA="1")
    marker = f"STACK_RUN_DIR={run_dir}"
    try:
        started = time.monotonic()
        up = make("up", env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        report.injected("HA=1 make up on free ports")
        report.figure("HA=1 make up, seconds until every instance was healthy", time.monotonic() - started, "s")
        check_table(up.stdout, env)
        status = make("status", env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        check_table(status.stdout, env)
        report.observed("make status lists prometheus, prometheus-b, alertmanager, alertmanager-b with their URLs")

        for replica in ha.REPLICAS:
            url = f"http://127.0.0.1:{env[PORTS[ha.instance('prometheus', replica)]]}"
            config = requests.get(url + "/api/v1/status/config", timeout=5).json()["data"]["yaml"]
            assert f"replica: {replica}" in config
            managers = requests.get(url + "/api/v1/alertmanagers", timeout=5).json()["data"]["activeAlertmanagers"]
            assert len(managers) == len(ha.REPLICAS)
        programs = Supervisor(run_dir / "supervisor.sock").processes()
        for name, variable in GOSSIP.items():
            gossip = {a for a in listening_addresses(programs[name]["pid"]) if a[1] == int(env[variable])}
            assert gossip == {("127.0.0.1", int(env[variable]))}, f"{name} gossips on {gossip}"
        report.observed("replica labels a and b, each sending to both Alertmanagers; gossip on 127.0.0.1 only")
    finally:
        pids = supervised_pids(run_dir)
        down = make("down", env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert len(pids) == len(states(up.stdout)) - 1, "one process per row but grafana"  # redis started by the stack
    assert not alive(pids)
    assert processes_with(marker) == [], "make down left processes behind"
    report.observed(f"make down stopped all {len(pids)} processes")
