"""The native runner's security defaults, from its own files: every server on 127.0.0.1, no secret
on a command line (where `ps` shows it to every user), a generated Flower password kept private."""

from __future__ import annotations

import configparser
import re
import stat
from pathlib import Path

import pytest

from native import settings, stack
from tests.support.procs import REPO

CONF = REPO / "native" / "supervisord.conf"


def programs() -> dict[str, str]:
    parser = configparser.RawConfigParser()
    parser.read(CONF)
    return {s.split(":", 1)[1]: parser[s]["command"] for s in parser.sections() if s.startswith("program:")}


LISTEN_FLAGS = {
    "redis": r"--bind 127\.0\.0\.1 ",
    "flower": r"--address=127\.0\.0\.1 ",
    "exporter": r"--address 127\.0\.0\.1 ",
    "prometheus": r"--web\.listen-address=127\.0\.0\.1:",
    "alertmanager": r"--web\.listen-address=127\.0\.0\.1:",
    "receiver": r"--address 127\.0\.0\.1 ",
}


@pytest.mark.parametrize("program", sorted(LISTEN_FLAGS))
def test_every_server_binds_loopback(program: str) -> None:
    command = programs()[program]
    assert re.search(LISTEN_FLAGS[program], command), command
    assert "0.0.0.0" not in command


def test_no_other_port_and_no_remote_control() -> None:
    cmds = programs()
    assert set(cmds) == {"redis", "worker", "beat", "flower", "exporter", "prometheus", "alertmanager", "receiver"}
    assert "--cluster.listen-address= " in cmds["alertmanager"] + " ", "no Alertmanager gossip port"
    assert "--web.enable-lifecycle" not in cmds["prometheus"], "any local user could POST /-/quit"
    text = CONF.read_text()
    assert "[inet_http_server]" not in text, "supervisord is controlled through its unix socket only"
    assert re.search(r"\[unix_http_server\][^\[]*chmod=0700", text)


def test_no_secret_on_a_command_line() -> None:
    for name, command in programs().items():
        for flag in ("--broker-url", "--basic-auth", "--basic_auth", "--requirepass", "ENV_FLOWER_BASIC_AUTH"):
            assert flag not in command, f"{name}: {flag} would show in ps"
        assert "ENV_CELERY_BROKER_URL" not in command, f"{name}: the broker URL (maybe with a password) in argv"
    env = stack.supervisord_env(settings.load({"CELERY_BROKER_URL": "redis://:pw@127.0.0.1:1/0"}), False)
    assert env["CELERY_EXPORTER_BROKER_URL"] == env["CELERY_BROKER_URL"] == "redis://:pw@127.0.0.1:1/0"


def test_the_generated_flower_password_is_random_and_private(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    first = settings.flower_basic_auth(tmp_path / "a")
    second = settings.flower_basic_auth(tmp_path / "b")
    assert first != second and first.startswith("admin:") and len(first.split(":", 1)[1]) >= 20
    assert settings.flower_basic_auth(tmp_path / "a") == first, "kept across restarts"
    assert stat.S_IMODE((tmp_path / "a" / "flower-basic-auth").stat().st_mode) == 0o600
    assert settings.HOST == "127.0.0.1"
