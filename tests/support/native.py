"""The native runner as a user runs it (make up / status / down) from tests: its table parsed,
its processes found by the run folder they carry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from native.supervisor_client import Supervisor
from tests.support.procs import REPO, free_port

# The ports of the plain stack, each a variable of the native runner (native/settings.py).
PORT_VARIABLES = ("FLOWER_PORT", "EXPORTER_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "RECEIVER_PORT")


def make(target: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", target], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def processes_with(marker: str) -> list[int]:
    """Pids of processes whose environment carries `marker`: everything the stack started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            carries = marker.encode() in (proc / "environ").read_bytes()
            if carries and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def states(stdout: str) -> dict[str, str]:
    """The state column of the table `make up` and `make status` print, by component."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("component"))
    state_at, url_at = lines[start].index("state"), lines[start].index("url")
    out = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out[line[:state_at].strip()] = line[state_at:url_at].strip()
    return out


def private_env(run_dir: Path, port_variables: tuple[str, ...] = PORT_VARIABLES, **extra: str) -> dict[str, str]:
    """The environment of a stack of its own: its run folder, a broker URL where no Redis
    answers (so it starts one), a free port for every one of `port_variables`."""
    env = {
        **os.environ,
        "STACK_RUN_DIR": str(run_dir),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        **{name: str(free_port()) for name in port_variables},
        **extra,
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    return env


def supervised_pids(run_dir: Path) -> list[int]:
    """Every process supervisord runs for the stack in `run_dir` right now."""
    sup = Supervisor(run_dir / "supervisor.sock")
    return [p["pid"] for p in sup.processes().values() if p["pid"]] if sup.running() else []


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie counts as gone)."""
    return [p for p in pids if Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
