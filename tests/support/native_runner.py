"""Running the native runner as a user does (`make up`, ...) and reading what it prints."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.procs import REPO


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
