"""The native runner's security defaults, from its own files: every server on 127.0.0.1, no secret
on a command line (where `ps` shows it to every user), a generated Flower password kept private."""

from __future__ import annotations

import re
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from native import settings, stack, supervisord

BROKER = "redis://:s3cr%t,pw@127.0.0.1:1/0"  # a password supervisord could mangle: % and ,


def rendered(tmp_path: Path, broker_url: str = BROKER) -> Path:
    """run/supervisord.conf as `make up` writes it."""
    s = settings.load({"STACK_RUN_DIR": str(tmp_path / "run"), "CELERY_BROKER_URL": broker_url})
    stack.prepare_run_dir(s)
    return supervisord.write(stack.table(s).values(), s.run_dir)


def loaded(conf: Path) -> dict[str, Any]:
    """Each program as supervisord itself reads the file."""
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    return {pc.name: pc for group in options.process_group_configs for pc in group.process_configs}


@pytest.fixture
def programs(tmp_path: Path) -> dict[str, str]:
    return {name: pc.command for name, pc in loaded(rendered(tmp_path)).items()}


LISTEN_FLAGS = {
    "redis": r"--bind 127\.0\.0\.1 ",
    "flower": r"--address=127\.0\.0\.1 ",
    "exporter": r"--address 127\.0\.0\.1 ",
    "prometheus": r"--web\.listen-address=127\.0\.0\.1:",
    "alertmanager": r"--web\.listen-address=127\.0\.0\.1:",
    "receiver": r"--address 127\.0\.0\.1 ",
}


@pytest.mark.parametrize("program", sorted(LISTEN_FLAGS))
def test_every_server_binds_loopback(program: str, programs: dict[str, str]) -> None:
    command = programs[program]
    assert re.search(LISTEN_FLAGS[program], command), command
    assert "0.0.0.0" not in command


def test_no_other_port_and_no_remote_control(tmp_path: Path) -> None:
    conf = rendered(tmp_path)
    cmds = {name: pc.command for name, pc in loaded(conf).items()}
    assert set(cmds) == {"redis", "worker", "beat", "flower", "exporter", "prometheus", "alertmanager", "receiver"}
    assert "--cluster.listen-address= " in cmds["alertmanager"] + " ", "no Alertmanager gossip port"
    assert "--web.enable-lifecycle" not in cmds["prometheus"], "any local user could POST /-/quit"
    text = conf.read_text()
    assert "[inet_http_server]" not in text, "supervisord is controlled through its unix socket only"
    assert re.search(r"\[unix_http_server\][^\[]*chmod=0700", text)


def test_no_secret_on_a_command_line(tmp_path: Path) -> None:
    conf = rendered(tmp_path)
    programs = loaded(conf)
    password = "s3cr%t,pw"
    for name, pc in programs.items():
        for flag in ("--broker-url", "--basic-auth", "--basic_auth", "--requirepass"):
            assert flag not in pc.command, f"{name}: {flag} would show in ps"
        assert password not in pc.command, f"{name}: the broker's password in argv"
    # ... but in the environment, intact through supervisord's own parsing, and the file is private
    assert programs["exporter"].environment["CELERY_EXPORTER_BROKER_URL"] == BROKER
    assert programs["worker"].environment["CELERY_BROKER_URL"] == BROKER
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_supervisord_runs_each_component_as_the_table_says(tmp_path: Path) -> None:
    programs = loaded(rendered(tmp_path))
    s = settings.load({"STACK_RUN_DIR": str(tmp_path / "run"), "CELERY_BROKER_URL": BROKER})
    for name, c in stack.table(s).items():
        assert shlex.split(programs[name].command) == list(c.argv), name
        assert programs[name].environment == dict(c.env), name
        assert programs[name].directory == str(c.cwd), name


def test_a_value_supervisord_cannot_carry_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^CELERY_BROKER_URL, CELERY_RESULT_BACKEND: a value with quotes") as caught:
        rendered(tmp_path, 'redis://:x9"q7@127.0.0.1:1/0')
    assert "x9" not in str(caught.value), "the message never shows the value"


def test_the_generated_flower_password_is_random_and_private(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    first = settings.flower_basic_auth(tmp_path / "a")
    second = settings.flower_basic_auth(tmp_path / "b")
    assert first != second and first.startswith("admin:") and len(first.split(":", 1)[1]) >= 20
    assert settings.flower_basic_auth(tmp_path / "a") == first, "kept across restarts"
    assert stat.S_IMODE((tmp_path / "a" / "flower-basic-auth").stat().st_mode) == 0o600
    assert settings.HOST == "127.0.0.1"
