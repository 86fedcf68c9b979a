"""Options: flags, environment, YAML file, their precedence, and one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_queue_exporter.config import ConfigError, load_config
from celery_queue_exporter.connection import redact_url
from tests.support.exporter import run_cli


def test_defaults():
    config = load_config([], environ={})
    assert config.broker_url == "redis://localhost:6379/0"
    assert (config.address, config.port) == ("127.0.0.1", 9818)
    assert config.priority_steps == (0, 3, 6, 9)
    assert config.sep == "\x06\x16"


def test_precedence_flag_env_file_default(tmp_path: Path):
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("port: 9001\nqueues: [a, b]\nmax-queues: 7\nredis_timeout: 4.5\nsep: '\\x01'\n")
    env = {"CELERY_EXPORTER_PORT": "9002", "CELERY_EXPORTER_MAX_QUEUES": "8", "CELERY_EXPORTER_CONFIG": str(cfg)}
    config = load_config(["--port", "9003"], environ=env)
    assert config.port == 9003  # flag beats env and file
    assert config.max_queues == 8  # env beats file
    assert config.queues == ("a", "b")  # file beats default
    assert config.redis_timeout == 4.5
    assert config.sep == "\x01"
    assert config.sources["port"] == "flag --port"
    assert config.sources["address"] == "default"


def test_broker_url_falls_back_to_celery_broker_url():
    assert load_config([], environ={"CELERY_BROKER_URL": "redis://b:1/2"}).broker_url == "redis://b:1/2"
    env = {"CELERY_BROKER_URL": "redis://b:1/2", "CELERY_EXPORTER_BROKER_URL": "redis://e:1/3"}
    assert load_config([], environ=env).broker_url == "redis://e:1/3"


def test_transport_options_of_the_app_sit_below_explicit_options():
    options = {"global_keyprefix": "pfx:", "priority_steps": [0, 5], "sep": ":", "visibility_timeout": 60}
    config = load_config(["--app", "proj:app", "--sep", "|"], environ={}, transport_options=lambda ref: options)
    assert config.global_keyprefix == "pfx:"
    assert config.priority_steps == (0, 5)
    assert config.sep == "|"
    assert config.visibility_timeout == 60


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "--port"),
        (["--port", "70000"], "1-65535"),
        (["--priority-steps", "a,b"], "--priority-steps"),
        (["--redis-timeout", "0"], "must be > 0"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_are_config_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv, environ={})


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="CELERY_EXPORTER_MAX_QUEUES"):
        load_config([], environ={"CELERY_EXPORTER_MAX_QUEUES": "-3"})


def test_redact_url():
    assert redact_url("redis://user:s3cret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact_url("redis://:s3cret@h/0") == "redis://:***@h/0"
    assert "s3cret" not in redact_url("sentinel://:s3cret@a:1;sentinel://:s3cret@b:2")
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "nope"],
        ["--no-such-flag"],
        ["--broker-url", "kafka://guest:s3cret@localhost//"],  # amqp:// is served: RabbitMQ
        ["--app", "no_such_module_xyz:app"],
        ["--broker-url", "sentinel://:s3cret@localhost:26379"],
    ],
)
def test_cli_bad_options_one_line_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("celery-queue-exporter: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize("content", ["port: [unclosed\n", "- just\n- a list\n", "no_such_option: 1\n", "port: abc\n"])
def test_cli_bad_config_file_exit_2(tmp_path: Path, content: str):
    cfg = tmp_path / "c.yml"
    cfg.write_text(content)
    result = run_cli("--config", str(cfg))
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_config_file_exit_2(tmp_path: Path):
    result = run_cli(env={"CELERY_EXPORTER_CONFIG": str(tmp_path / "missing.yml")})
    assert result.returncode == 2 and "missing.yml" in result.stderr


def test_cli_help_and_version():
    assert run_cli("--help").returncode == 0
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("celery-queue-exporter ")
