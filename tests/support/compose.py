"""docker-compose.yml as the tests read and validate it (with the secrets it requires set)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.procs import REPO

COMPOSE = REPO / "docker-compose.yml"
# What compose refuses to start without (`${VAR:?}`): test values, never real ones.
COMPOSE_SECRETS = {
    "FLOWER_BASIC_AUTH": "u:test-secret",
    "GRAFANA_ADMIN_PASSWORD": "test-secret",
    "REDIS_PASSWORD": "test-secret-redis-0123456789",
    "REDIS_EXPORTER_PASSWORD": "test-secret-exporter-0123456789",
}


def compose_config(
    env: dict[str, str], files: Sequence[Path] = (COMPOSE,), quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of `files` (merged in order) with `env` as the only compose
    secrets set; `quiet`: `config -q`, validation only."""
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS and not k.startswith("RABBITMQ_")}
    return subprocess.run(
        ["docker-compose", *(a for f in files for a in ("-f", str(f))), "config", *(["-q"] if quiet else [])],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        cwd=REPO,
    )
