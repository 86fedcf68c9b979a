"""The README's promise, as a user runs it: make up, make status, make demo, make down.

On its own Redis (a free port where nothing answers, so the stack starts one), free ports for
everything, and its own run folder: the machine's shared services are never touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from native.components import KINDS
from native.supervisor_client import Supervisor
from tests.support.native_runner import make, processes_with, states
from tests.support.procs import free_port

pytestmark = pytest.mark.slow


def expected_state(component: str, state: str) -> bool:
    if component == "beat":  # nothing to ask beat: supervisord's RUNNING is all there is
        return state == "running"
    if component == "worker":
        return state == "healthy, 1 worker(s) answer ping"
    if component == "prometheus":
        return state == "healthy, targets 4/4 up"
    return state == "healthy"


def assert_all_healthy(stdout: str) -> None:
    table = states(stdout)
    assert set(table) == {*KINDS, "grafana"}, stdout
    for component in KINDS:
        assert expected_state(component, table[component]), f"{component}: {table[component]!r}\n{stdout}"


def test_the_state_check_refuses_what_is_not_healthy() -> None:
    assert not expected_state("beat", "not running")
    assert not expected_state("redis", "not healthy")
    assert not expected_state("prometheus", "healthy, targets 3/4 up")
    assert expected_state("beat", "running") and expected_state("flower", "healthy")


def test_up_status_demo_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "STACK_RUN_DIR": str(run_dir),
        "ALERT_PROFILE": "demo",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        **{
            name: str(free_port())
            for name in ("FLOWER_PORT", "EXPORTER_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "RECEIVER_PORT")
        },
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    marker = f"STACK_RUN_DIR={run_dir}"
    try:
        up = make("up", env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert_all_healthy(up.stdout)
        assert "Flower login: admin:" in up.stdout
        assert processes_with(marker), "the stack's processes carry its run folder in their environment"

        status = make("status", env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert_all_healthy(status.stdout)

        demo = make("demo", env, timeout=400)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        timeline = demo.stdout
        for step in (
            "published 1500 tasks",
            "seen by the exporter",
            "pending in Prometheus",
            "firing in Prometheus",
            "delivered to the receiver",
        ):
            assert step in timeline, timeline
        assert "CeleryQueueBacklog" in (run_dir / "logs" / "receiver.log").read_text()
    finally:
        sup = Supervisor(run_dir / "supervisor.sock")
        pids = [p["pid"] for p in sup.processes().values() if p["pid"]] if sup.running() else []
        down = make("down", env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert pids and not [
        p for p in pids if Path(f"/proc/{p}").exists() and (Path(f"/proc/{p}/stat").read_text().split()[2] != "Z")
    ]
    assert processes_with(marker) == [], "make down left processes behind"
