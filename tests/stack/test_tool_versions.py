"""install-tools.sh accepts what Debian sid serves within the pinned major version, says which
versions the tests run, and warns (never fails) when they drift from docker-compose.yml's pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from native import tool_versions
from native.tool_versions import IMAGES, check, pins, version_of
from tests.support.procs import REPO, TOOLS_BIN

COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()


def installed() -> dict[str, str | None]:
    return {binary: version_of(TOOLS_BIN / binary) for binary in IMAGES}


def repinned(image: str, version: str) -> str:
    """docker-compose.yml with `image` pinned at `version`."""
    text, count = re.subn(rf"(image:\s*{re.escape(image)}):v[\d.]+", rf"\1:v{version}", COMPOSE_TEXT)
    assert count == 1
    return text


def test_the_tools_the_tests_run_are_of_the_pinned_major_versions() -> None:
    errors, drift = check(pins(COMPOSE_TEXT), installed())
    assert not errors
    for line in drift:  # visible in the test summary, never a failure: sid moves on
        warnings.warn(line, stacklevel=1)


def test_a_newer_minor_version_is_accepted_with_a_warning_naming_both() -> None:
    got = installed()["prometheus"]
    major, minor, _ = got.split(".")
    errors, drift = check(pins(repinned("prom/prometheus", f"{major}.{int(minor) + 1}.0")), installed())
    assert not errors
    assert len(drift) == 2  # prometheus and promtool
    assert f"prometheus {got}" in drift[0] and f"prom/prometheus:v{major}.{int(minor) + 1}.0" in drift[0]


def test_another_major_version_or_a_missing_binary_is_an_error() -> None:
    errors, _ = check(pins(repinned("prom/alertmanager", "9.0.0")), installed())
    assert [e.split()[0] for e in errors] == ["prometheus-alertmanager", "amtool"]
    errors, _ = check(pins(COMPOSE_TEXT), {**installed(), "promtool": None})
    assert errors == ["promtool is missing or does not run"]


def test_a_compose_file_without_the_pins_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"pins no vX\.Y\.Z version of prom/alertmanager"):
        pins(COMPOSE_TEXT.replace("prom/alertmanager:v", "prom/alertmanager:latest-"))


def scratch_repo(tmp_path: Path, compose_text: str) -> Path:
    """install-tools.sh and its helper in a scratch repository, its .tools/ pointing at the real
    binaries: the shared .tools/ is never written."""
    root = tmp_path / "repo"
    (root / "native").mkdir(parents=True)
    for name in ("install-tools.sh", "tool_versions.py"):
        shutil.copy2(REPO / "native" / name, root / "native" / name)
    (root / "docker-compose.yml").write_text(compose_text)
    (root / ".tools" / "bin").mkdir(parents=True)
    for binary in IMAGES:
        (root / ".tools" / "bin" / binary).symlink_to((TOOLS_BIN / binary).resolve())
    return root


def run_install_tools(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STACK_TOOLS_DIR"}
    return subprocess.run(
        ["bash", str(root / "native" / "install-tools.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def test_install_tools_prints_the_versions_and_warns_on_drift_without_failing(tmp_path: Path) -> None:
    now = installed()
    result = run_install_tools(scratch_repo(tmp_path, COMPOSE_TEXT))
    assert result.returncode == 0, result.stderr
    assert f"the tests run prometheus {now['prometheus']}, promtool {now['promtool']}" in result.stdout
    major = now["prometheus"].split(".")[0]
    drifted = run_install_tools(scratch_repo(tmp_path / "drift", repinned("prom/prometheus", f"{major}.999.0")))
    assert drifted.returncode == 0, drifted.stderr
    assert f"WARNING: the tests run prometheus {now['prometheus']} but docker-compose.yml pins" in drifted.stderr
    assert f"prom/prometheus:v{major}.999.0" in drifted.stderr


def test_the_cli_exits_non_zero_on_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE_TEXT)
    assert tool_versions.main(["--compose", str(compose), "--tools", str(TOOLS_BIN)]) == 0
    assert tool_versions.main(["--compose", str(compose), "--tools", str(tmp_path / "none")]) == 1
    assert "ERROR: prometheus is missing" in capsys.readouterr().err
