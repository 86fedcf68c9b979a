"""python -m alertmanager.channels: Slack, email and a generic webhook from the environment."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alertmanager import channels
from tests.support.procs import REPO, tool

BASE = yaml.safe_load(channels.BASE_CONFIG.read_text())
ALL = {
    "ALERT_WEBHOOK_URL": "https://pager.example/v1/hook?token=pager-secret",
    "ALERT_SLACK_API_URL": "https://hooks.slack.example/services/T/B/slack-secret",
    "ALERT_SLACK_CHANNEL": "#celery-alerts",
    "ALERT_EMAIL_TO": "oncall@example.com",
    "ALERT_EMAIL_FROM": "alertmanager@example.com",
    "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
    "ALERT_SMTP_USERNAME": "alertmanager",
    "ALERT_SMTP_PASSWORD": "smtp-secret",
}


def integrations(config: dict, receiver: str) -> set[str]:
    found = next(r for r in config["receivers"] if r["name"] == receiver)
    return {k for k, v in found.items() if k.endswith("_configs") and v}


def test_no_channel_set_leaves_the_configuration_as_it_is() -> None:
    config, secrets, summary = channels.render(BASE, {})
    assert config == BASE and secrets == {} and summary == []


def test_each_channel_joins_the_receivers_of_its_severities() -> None:
    config, _, summary = channels.render(BASE, ALL)
    assert integrations(config, "critical") == {"webhook_configs", "slack_configs", "email_configs"}
    assert integrations(config, "warning") == {"webhook_configs", "slack_configs", "email_configs"}
    warning = next(r for r in config["receivers"] if r["name"] == "warning")
    assert [w.get("url_file") for w in warning["webhook_configs"]] == ["endpoints/local-receiver-url"]
    assert integrations(config, "local") == {"webhook_configs"}
    assert summary == ["webhook: critical", "slack: critical, warning", "email: critical, warning"]
    only_critical, _, _ = channels.render(BASE, {**ALL, "ALERT_SLACK_SEVERITIES": "critical"})
    assert "slack_configs" not in integrations(only_critical, "warning")


def test_secrets_live_in_0600_files_never_in_the_config(tmp_path: Path) -> None:
    assert channels.main(["--out", str(tmp_path)], ALL) == 0
    text = (tmp_path / "alertmanager.yml").read_text()
    for secret in ("pager-secret", "slack-secret", "smtp-secret"):
        assert secret not in text
    secret_dir = tmp_path / "secrets"
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    files = {p.name: p for p in secret_dir.iterdir()}
    assert set(files) == {"webhook-url", "slack-api-url", "smtp-password"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.values())
    assert files["smtp-password"].read_text() == "smtp-secret\n"
    result = subprocess.run([tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True)
    assert result.returncode == 0, result.stdout


def test_a_channel_unset_since_the_last_run_leaves_no_secret_behind(tmp_path: Path) -> None:
    channels.main(["--out", str(tmp_path)], ALL)
    channels.main(["--out", str(tmp_path)], {"ALERT_WEBHOOK_URL": ALL["ALERT_WEBHOOK_URL"]})
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["webhook-url"]
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert "slack_configs" not in integrations(config, "critical")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_EMAIL_TO": "a@example.com"}, "also set ALERT_EMAIL_FROM, ALERT_SMTP_SMARTHOST"),
        ({**ALL, "ALERT_SMTP_SMARTHOST": "smtp.example.com"}, "host:port"),
        ({"ALERT_WEBHOOK_URL": "pager.example/hook"}, "ALERT_WEBHOOK_URL must be an http(s):// URL"),
        ({"ALERT_SLACK_CHANNEL": "#x"}, "ALERT_SLACK_API_URL is not"),
        ({**ALL, "ALERT_EMAIL_SEVERITIES": "info"}, "ALERT_EMAIL_SEVERITIES='info'"),
        ({**ALL, "ALERT_SMTP_REQUIRE_TLS": "maybe"}, "true or false"),
    ],
)
def test_a_channel_configured_wrongly_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(channels.ChannelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        channels.render(BASE, env)


def test_the_cli_says_what_is_wrong_in_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alertmanager.channels", "--out", str(tmp_path)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "ALERT_EMAIL_TO": "a@example.com"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("alertmanager.channels: email is half configured")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "alertmanager.yml").exists()
