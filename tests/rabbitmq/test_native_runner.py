"""The native runner on RabbitMQ, as a user runs it: CELERY_BROKER_URL=amqp://... make up, make
status, make down; on the private node (never the machine's 5672), free ports, its own run folder.
No Redis is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from native import demo, settings
from native.supervisor_client import Supervisor
from tests.support.native import make, processes_with, states
from tests.support.procs import REPO, free_port
from tests.support.rabbitmq import RabbitMQNode

pytestmark = pytest.mark.slow


def stack_env(run_dir: Path, broker_url: str, management_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "STACK_RUN_DIR": str(run_dir),
        "ALERT_PROFILE": "demo",
        "CELERY_BROKER_URL": broker_url,
        "RABBITMQ_MANAGEMENT_URL": management_url,
        **{
            name: str(free_port())
            for name in ("FLOWER_PORT", "EXPORTER_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "RECEIVER_PORT")
        },
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    return env


def test_without_a_management_api_up_says_so_in_one_line(rabbitmq: RabbitMQNode, vhost: str, tmp_path: Path) -> None:
    env = stack_env(tmp_path / "run", rabbitmq.amqp_url(vhost), f"http://127.0.0.1:{free_port()}")
    up = subprocess.run([sys.executable, "-m", "native", "up"], cwd=REPO, env=env, capture_output=True, text=True)
    assert up.returncode == 1, up.stdout + up.stderr
    assert up.stderr.count("\n") == 1, up.stderr
    assert "its management API does not" in up.stderr and "rabbitmq-plugins enable rabbitmq_management" in up.stderr
    assert rabbitmq.admin_password not in up.stdout + up.stderr
    assert not (tmp_path / "run" / "supervisor.sock").exists()


def test_up_status_down_on_rabbitmq(rabbitmq: RabbitMQNode, vhost: str, tmp_path: Path) -> None:
    """`make demo` is not run here (its demo alert profile alone takes a minute and a half): the
    alert's path on RabbitMQ is test_backlog_alert.py's, with the same component table."""
    run_dir = tmp_path / "run"
    env = stack_env(run_dir, rabbitmq.amqp_url(vhost), rabbitmq.management_url)
    marker = f"STACK_RUN_DIR={run_dir}"
    pids: list[int] = []
    try:
        up = make("up", env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "reusing the RabbitMQ at amqp://admin:***@" in up.stdout
        for out in (up.stdout, make("status", env, timeout=60).stdout):
            table = states(out)
            assert "redis" not in table, out
            assert table["rabbitmq"].startswith("healthy, RabbitMQ 3.") and table["rabbitmq"].endswith("(reused)")
            assert table["exporter"] == "healthy" and table["prometheus"] == "healthy, targets 4/4 up", out
            assert table["worker"] == "healthy, 1 worker(s) answer ping", out
        assert rabbitmq.admin_password not in up.stdout
    finally:
        sup = Supervisor(run_dir / "supervisor.sock")
        pids = [p["pid"] for p in sup.processes().values() if p["pid"]] if sup.running() else []
        down = make("down", env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert pids and processes_with(marker) == [], "make down left processes behind"


def test_the_demo_empties_its_queue_through_kombu(rabbitmq: RabbitMQNode, vhost: str, tmp_path: Path) -> None:
    s = settings.load(stack_env(tmp_path, rabbitmq.amqp_url(vhost), rabbitmq.management_url))
    demo._purge(s)  # before the queue exists: nothing to do, no error
    with Connection(rabbitmq.amqp_url(vhost), transport_options={"confirm_publish": True}) as conn:
        queue = Queue(demo.QUEUE, Exchange(demo.QUEUE), demo.QUEUE)
        for i in range(3):
            conn.Producer().publish({"n": i}, exchange=queue.exchange, routing_key=demo.QUEUE, declare=[queue])

        def ready() -> int:  # a passive declare counts at once (management numbers are sampled)
            return conn.default_channel.queue_declare(demo.QUEUE, passive=True).message_count

        assert ready() == 3
        demo._purge(s)
        assert ready() == 0
