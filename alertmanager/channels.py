"""Notification channels from the environment: Slack, email, a generic (paging) webhook.

`python -m alertmanager.channels --out DIR` writes DIR/alertmanager.yml: alertmanager/alertmanager.yml
with each configured channel added to the receivers of the severities it takes, and each secret
in its own file under DIR/secrets/ (mode 0600), read by Alertmanager through url_file,
api_url_file and auth_password_file, so no secret is ever written into the configuration.
A channel whose variables are unset is left out entirely: nothing tries to send to it, and the
file is a valid configuration whatever is set. Run Alertmanager with DIR as its working
directory (DIR/endpoints/local-receiver-url is the runner's, as before).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

HERE = Path(__file__).resolve().parent
BASE_CONFIG = HERE / "alertmanager.yml"
SEVERITIES = ("critical", "warning")

# Alertmanager templates: one title line, then each alert's description and links.
TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
    "{{ .CommonLabels.alertname }}"
    '{{ range .GroupLabels.SortedPairs }}{{ if ne .Name "alertname" }} {{ .Name }}={{ .Value }}{{ end }}{{ end }}'
)
SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Status | toUpper }}* [{{ .Labels.severity }}] {{ .Annotations.description }}\n"
    "Runbook: {{ .Annotations.runbook_url }}  Dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}"
)


class ChannelError(ValueError):
    """The environment configures a channel halfway or wrongly."""


@dataclass(frozen=True)
class Channel:
    name: str
    key: str  # the receiver config key it adds: webhook_configs, slack_configs, email_configs
    default_severities: tuple[str, ...]
    build: Callable[[Mapping[str, str], dict[str, str]], dict[str, Any] | None]  # env, secrets out -> config

    @property
    def severities_env(self) -> str:
        return f"ALERT_{self.name.upper()}_SEVERITIES"


def _url(env: Mapping[str, str], name: str) -> str:
    value = env[name].strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ChannelError(f"{name} must be an http(s):// URL")
    return value


def webhook(env: Mapping[str, str], secrets: dict[str, str]) -> dict[str, Any] | None:
    if not env.get("ALERT_WEBHOOK_URL"):
        return None
    secrets["webhook-url"] = _url(env, "ALERT_WEBHOOK_URL")
    return {"url_file": "secrets/webhook-url", "send_resolved": True}


def slack(env: Mapping[str, str], secrets: dict[str, str]) -> dict[str, Any] | None:
    if not env.get("ALERT_SLACK_API_URL"):
        if env.get("ALERT_SLACK_CHANNEL"):
            raise ChannelError("ALERT_SLACK_CHANNEL is set but ALERT_SLACK_API_URL is not")
        return None
    secrets["slack-api-url"] = _url(env, "ALERT_SLACK_API_URL")
    config: dict[str, Any] = {"api_url_file": "secrets/slack-api-url", "send_resolved": True}
    if env.get("ALERT_SLACK_CHANNEL"):
        config["channel"] = env["ALERT_SLACK_CHANNEL"]
    config.update(title=TITLE, text=SLACK_TEXT)
    return config


EMAIL_REQUIRED = ("ALERT_EMAIL_TO", "ALERT_EMAIL_FROM", "ALERT_SMTP_SMARTHOST")
EMAIL_OPTIONAL = ("ALERT_SMTP_USERNAME", "ALERT_SMTP_PASSWORD", "ALERT_SMTP_REQUIRE_TLS")


def email(env: Mapping[str, str], secrets: dict[str, str]) -> dict[str, Any] | None:
    given = [n for n in EMAIL_REQUIRED + EMAIL_OPTIONAL if env.get(n)]
    if not given:
        return None
    missing = [n for n in EMAIL_REQUIRED if not env.get(n)]
    if missing:
        raise ChannelError(f"email is half configured ({', '.join(given)} set): also set {', '.join(missing)}")
    host, _, port = env["ALERT_SMTP_SMARTHOST"].rpartition(":")
    if not host or not port.isdigit():
        raise ChannelError("ALERT_SMTP_SMARTHOST must be host:port, e.g. smtp.example.com:587")
    tls = env.get("ALERT_SMTP_REQUIRE_TLS", "true").strip().lower()
    if tls not in ("true", "false"):
        raise ChannelError("ALERT_SMTP_REQUIRE_TLS must be true or false")
    config: dict[str, Any] = {
        "to": env["ALERT_EMAIL_TO"],
        "from": env["ALERT_EMAIL_FROM"],
        "smarthost": env["ALERT_SMTP_SMARTHOST"],
        "require_tls": tls == "true",
        "send_resolved": True,
        "headers": {"Subject": TITLE},
    }
    if env.get("ALERT_SMTP_USERNAME"):
        config["auth_username"] = env["ALERT_SMTP_USERNAME"]
    if env.get("ALERT_SMTP_PASSWORD"):
        if not env.get("ALERT_SMTP_USERNAME"):
            raise ChannelError("ALERT_SMTP_PASSWORD is set but ALERT_SMTP_USERNAME is not")
        secrets["smtp-password"] = env["ALERT_SMTP_PASSWORD"]
        config["auth_password_file"] = "secrets/smtp-password"
    return config


CHANNELS = (
    Channel("webhook", "webhook_configs", ("critical",), webhook),
    Channel("slack", "slack_configs", ("critical", "warning"), slack),
    Channel("email", "email_configs", ("critical", "warning"), email),
)


def severities(channel: Channel, env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get(channel.severities_env, "").strip()
    if not raw:
        return channel.default_severities
    chosen = tuple(s.strip() for s in raw.split(",") if s.strip())
    wrong = [s for s in chosen if s not in SEVERITIES]
    if wrong or not chosen:
        raise ChannelError(f"{channel.severities_env}={raw!r}: choose from {', '.join(SEVERITIES)}")
    return chosen


def render(base: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(effective config, secret file name -> content, one line per configured channel)."""
    config = copy.deepcopy(base)
    receivers = {r["name"]: r for r in config["receivers"]}
    secrets: dict[str, str] = {}
    summary: list[str] = []
    for channel in CHANNELS:
        integration = channel.build(env, secrets)
        if integration is None:
            continue
        chosen = severities(channel, env)
        for severity in chosen:
            receivers[severity].setdefault(channel.key, []).append(copy.deepcopy(integration))
        summary.append(f"{channel.name}: {', '.join(chosen)}")
    return config, secrets, summary


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically, so a reloading Alertmanager never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


class _Dumper(yaml.SafeDumper):
    """No anchors/aliases, block style for multi-line templates."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def dump(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=4096, default_flow_style=False)


HEADER = (
    "# Written by `python -m alertmanager.channels` from alertmanager/alertmanager.yml and the\n"
    "# ALERT_* environment variables: edit those, not this file.\n"
)


def write(out: Path, base_path: Path, env: Mapping[str, str]) -> list[str]:
    base = yaml.safe_load(base_path.read_text())
    config, secrets, summary = render(base, env)
    secret_dir = out / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(secret_dir, 0o700)
    for stale in secret_dir.iterdir():  # a channel unset since the last run leaves no secret behind
        if stale.name not in secrets:
            stale.unlink()
    for name, value in secrets.items():
        _write(secret_dir / name, value + "\n", 0o600)
    _write(out / "alertmanager.yml", HEADER + dump(config), 0o644)
    return summary


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alertmanager.channels", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Alertmanager's working directory")
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="base configuration (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        summary = write(args.out, args.config, os.environ if env is None else env)
    except ChannelError as exc:
        print(f"alertmanager.channels: {exc}", file=sys.stderr)
        return 2
    except (OSError, yaml.YAMLError) as exc:
        print(f"alertmanager.channels: {exc}", file=sys.stderr)
        return 1
    shown = "; ".join(summary) if summary else "none (local receiver only)"
    print(f"alertmanager channels: {shown}; wrote {args.out / 'alertmanager.yml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
