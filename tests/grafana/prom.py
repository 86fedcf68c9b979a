"""A throwaway Prometheus (the pinned one in .tools/bin) on a free 127.0.0.1 port, for tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.procs import Proc, free_port, tool, wait_until


def require(name: str) -> str:
    """Path of a Prometheus tool, or a clear failure telling how to install it."""
    path = tool(name)
    if not Path(path).exists() and shutil.which(path) is None:
        pytest.fail(f"{name} not found: run native/install-tools.sh (make tools) first")
    return path


def backfill(openmetrics: str, tsdb_dir: Path, work_dir: Path) -> None:
    """Write OpenMetrics samples into TSDB blocks that Prometheus loads at start-up."""
    source = work_dir / "backfill.om"
    source.write_text(openmetrics)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [require("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"promtool backfill failed:\n{done.stdout}\n{done.stderr}"


def backfill_rules(rule_file: Path, url: str, start: float, end: float, tsdb_dir: Path, step: str = "5s") -> None:
    """Evaluate the recording rules of `rule_file` over [start, end] against the Prometheus at
    `url` (which holds the raw samples) and write the results as TSDB blocks into `tsdb_dir`:
    Prometheus itself records only from the moment it runs, never over backfilled history."""
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            require("promtool"),
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--url={url}",
            f"--start={int(start)}",
            f"--end={int(end)}",
            f"--eval-interval={step}",
            f"--output-dir={tsdb_dir}",
            str(rule_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"promtool rule backfill failed:\n{done.stdout}\n{done.stderr}"


@contextmanager
def running_prometheus(work_dir: Path, rules: dict | None = None, tsdb_dir: Path | None = None) -> Iterator[str]:
    """Start Prometheus with no scrape target (and `rules`, if any); yield its base URL."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config: dict = {"global": {"evaluation_interval": "1s"}}
    if rules:
        (work_dir / "rules.yml").write_text(yaml.safe_dump(rules))
        config["rule_files"] = [str(work_dir / "rules.yml")]
    (work_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = Proc(
        f"prometheus-{port}",
        [
            require("prometheus"),
            f"--config.file={work_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb_dir or work_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
        ],
        work_dir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(
                lambda: proc.alive() and requests.get(f"{url}/-/ready", timeout=2).status_code == 200,
                30,
                "prometheus to be ready",
            )
        except TimeoutError:
            pytest.fail(f"prometheus did not start:\n{proc.log()[-3000:]}")
        yield url
    finally:
        proc.stop()  # by its process id (its own process group), never by name
