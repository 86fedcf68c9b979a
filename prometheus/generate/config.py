"""Read and check prometheus/alerting.yml: every mistake is one clear line, before any rule is written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prometheus.generate import promql as q
from prometheus.generate.catalog import BY_NAME, Param, Scope

HERE = Path(__file__).resolve().parents[1]
DEFAULT_PATH = HERE / "alerting.yml"
PRODUCTION = "production"
TOP_KEYS = {"links", "jobs", "blind_hold", "rate_window", "alerts", "overrides", "profiles"}


class ConfigError(ValueError):
    """alerting.yml says something the generator cannot turn into rules."""


@dataclass(frozen=True)
class AlertingConfig:
    runbook_base_url: str
    grafana_base_url: str
    jobs: Mapping[str, str]
    blind_hold: str
    rate_window: str
    alerts: Mapping[str, Mapping[str, Any]]  # alert -> parameters, `for` included
    overrides: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]  # label -> value -> alert -> params
    profiles: Mapping[str, Mapping[str, str]]  # profile -> alert -> for

    @property
    def settings(self) -> dict[str, Any]:
        return {"jobs": dict(self.jobs), "blind_hold": self.blind_hold, "rate_window": self.rate_window}

    def params(self, alert: str, label: str | None = None, value: str | None = None) -> dict[str, Any]:
        """Parameters of `alert`, with the override for `label`=`value` applied when given."""
        merged = dict(self.alerts[alert])
        if label and value is not None:
            merged.update(self.overrides.get(label, {}).get(value, {}).get(alert, {}))
        return merged

    def override_values(self, label: str, alerts: tuple[str, ...]) -> list[str]:
        """Label values with an override for any of `alerts`, sorted."""
        by_value = self.overrides.get(label, {})
        return sorted(v for v, per_alert in by_value.items() if any(a in per_alert for a in alerts))

    def durations(self, profile: str) -> dict[str, str]:
        """`for:` of every alert in a profile (production: the alerts section)."""
        base = {name: params["for"] for name, params in self.alerts.items()}
        if profile == PRODUCTION:
            return base
        if profile not in self.profiles:
            raise ConfigError(f"unknown profile {profile!r}; alerting.yml has: {', '.join(self.profile_names)}")
        return {**base, **self.profiles[profile]}

    @property
    def profile_names(self) -> list[str]:
        return [PRODUCTION, *sorted(self.profiles)]


def load(path: Path = DEFAULT_PATH) -> AlertingConfig:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse(doc, str(path))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid(kind: Param, v: Any) -> bool:
    if kind is Param.DURATION:
        return q.is_duration(v)
    if kind is Param.NUMBER:
        return _is_number(v) and v >= 0
    if kind is Param.RATIO:
        return _is_number(v) and 0 < v <= 1
    if kind is Param.COUNT:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if kind is Param.SECONDS_OR_NULL:
        return v is None or (_is_number(v) and v > 0)
    if kind is Param.BOOL:
        return isinstance(v, bool)
    return isinstance(v, dict) and bool(v) and all(isinstance(k, str) and q.is_duration(p) for k, p in v.items())


def _check_param(kind: Param, value: Any, where: str) -> Any:
    if not _valid(kind, value):
        raise ConfigError(f"{where}: {value!r} is not {kind.value}")
    return value


def _check_params(alert: str, params: dict[str, Any], where: str, partial: bool) -> dict[str, Any]:
    spec = BY_NAME[alert]
    allowed = {"for": Param.DURATION, **spec.params}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)}; {alert} takes {', '.join(allowed)}")
    missing = sorted(set(allowed) - set(params))
    if missing and not partial:
        raise ConfigError(f"{where}: missing parameter(s) {', '.join(missing)}")
    return {k: _check_param(allowed[k], v, f"{where}.{k}") for k, v in params.items()}


def parse(doc: Any, source: str = "alerting.yml") -> AlertingConfig:
    doc = _mapping(doc, source)
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(TOP_KEYS))}")
    links = _mapping(doc.get("links"), "links")
    jobs = _mapping(doc.get("jobs"), "jobs")
    for key in ("exporter", "flower"):
        if not isinstance(jobs.get(key), str) or not jobs[key]:
            raise ConfigError(f"jobs.{key}: the Prometheus job name is required")
    for key in ("runbook_base_url", "grafana_base_url"):
        if not isinstance(links.get(key), str) or not links[key]:
            raise ConfigError(f"links.{key}: a URL is required")
    for key in ("blind_hold", "rate_window"):
        _check_param(Param.DURATION, doc.get(key), key)

    alerts_doc = _mapping(doc.get("alerts"), "alerts")
    unknown = sorted(set(alerts_doc) - set(BY_NAME))
    missing = sorted(set(BY_NAME) - set(alerts_doc))
    if unknown:
        raise ConfigError(f"alerts: unknown alert(s) {', '.join(unknown)}")
    if missing:
        raise ConfigError(f"alerts: missing alert(s) {', '.join(missing)}")
    alerts = {
        name: _check_params(name, _mapping(alerts_doc[name], f"alerts.{name}"), f"alerts.{name}", partial=False)
        for name in BY_NAME
    }

    overrides: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for label, by_value in _mapping(doc.get("overrides"), "overrides").items():
        scopes = {Scope.QUEUE.value, Scope.TASK.value}
        if label not in scopes:
            raise ConfigError(f"overrides.{label}: overrides are keyed by {' or '.join(sorted(scopes))}")
        overrides[label] = {}
        for value, per_alert in _mapping(by_value, f"overrides.{label}").items():
            where = f"overrides.{label}.{value}"
            overrides[label][str(value)] = {}
            for alert, params in _mapping(per_alert, where).items():
                if alert not in BY_NAME or BY_NAME[alert].scope.value != label:
                    fits = sorted(a.name for a in BY_NAME.values() if a.scope.value == label)
                    raise ConfigError(f"{where}.{alert}: only {', '.join(fits)} can be overridden per {label}")
                checked = _check_params(alert, _mapping(params, f"{where}.{alert}"), f"{where}.{alert}", True)
                overrides[label][str(value)][alert] = checked

    profiles: dict[str, dict[str, str]] = {}
    for profile, durations in _mapping(doc.get("profiles"), "profiles").items():
        if profile == PRODUCTION:
            raise ConfigError("profiles.production: production is the alerts section itself")
        profiles[profile] = {}
        for alert, value in _mapping(durations, f"profiles.{profile}").items():
            if alert not in BY_NAME:
                raise ConfigError(f"profiles.{profile}.{alert}: unknown alert (a profile only sets `for:` per alert)")
            profiles[profile][alert] = _check_param(Param.DURATION, value, f"profiles.{profile}.{alert}")

    hold = q.seconds(doc["blind_hold"])
    for blind in ("CeleryExporterDown", "CeleryBrokerDown"):
        if q.seconds(alerts[blind]["for"]) >= hold:
            raise ConfigError(f"blind_hold {doc['blind_hold']} must exceed the `for:` of {blind}")
    return AlertingConfig(
        runbook_base_url=links["runbook_base_url"],
        grafana_base_url=links["grafana_base_url"].rstrip("/"),
        jobs=jobs,
        blind_hold=doc["blind_hold"],
        rate_window=doc["rate_window"],
        alerts=alerts,
        overrides=overrides,
        profiles=profiles,
    )
