"""Build the rule groups (recording and alerting) of one profile from the checked configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from prometheus.generate import promql as q
from prometheus.generate.catalog import (
    ALERTS,
    BROKER_LABEL,
    LAST_KNOWN,
    OVERVIEW,
    WORKER_LAST_KNOWN,
    AlertSpec,
    RuleContext,
    Scope,
    last_known_expr,
)
from prometheus.generate.config import PRODUCTION, AlertingConfig

Rule = dict[str, Any]
Group = dict[str, Any]

RECORDING_FILE = "celery-recording.yml"
ALERTS_FILE = "celery-alerts.yml"
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Profile:
    """Which `for:` durations the rules get: production's, a named profile's, or one for all
    (the end-to-end tests' short timings)."""

    name: str = PRODUCTION
    durations: Mapping[str, str] = field(default_factory=dict)  # alert -> for, replacing production's

    def for_of(self, alert: str, params: Mapping[str, Any]) -> str:
        return self.durations.get(alert, params["for"])


def profile(config: AlertingConfig, name: str) -> Profile:
    if name == PRODUCTION:
        return Profile()
    config.durations(name)  # ConfigError for an unknown profile
    return Profile(name, dict(config.profiles[name]))


def uniform(duration: str) -> Profile:
    """Every alert with the same `for:` (for the end-to-end tests)."""
    return Profile(f"for={duration}", {a.name: duration for a in ALERTS})


# --- recording rules shared by dashboards and alerts ----------------------------------------
def recording_group(config: AlertingConfig) -> Group:
    w = config.rate_window
    b = BROKER_LABEL  # kept by every rule: two brokers' `default` queues (or tasks) are two series
    done = 'type=~"task-succeeded|task-failed"'
    rules: list[Rule] = [
        {"record": "queue_name:celery_queue_length:sum", "expr": f"sum by ({b}, queue_name) (celery_queue_length)"},
        # task-sent events carry the producer's hostname as `worker`: aggregate it away.
        {
            "record": f"task_type:flower_events:rate{w}",
            "expr": f"sum by ({b}, task, type) (rate(flower_events_total[{w}]))",
        },
        {
            "record": f"task:flower_task_completions:increase{w}",
            "expr": f"sum by ({b}, task) (increase(flower_events_total{{{done}}}[{w}]))",
        },
        {
            "record": f"task:flower_task_failures:ratio_rate{w}",
            "expr": (
                f'(\n  sum by ({b}, task) (rate(flower_events_total{{type="task-failed"}}[{w}]))\n  or\n'
                f'  sum by ({b}, task) (rate(flower_events_total{{type="task-succeeded"}}[{w}])) * 0\n)\n/\n'
                f"(sum by ({b}, task) (rate(flower_events_total{{{done}}}[{w}])) > 0)"
            ),
        },
    ]
    for quantile in QUANTILES:
        rules.append(
            {
                "record": f"task:flower_task_runtime_seconds:p{round(quantile * 100)}_rate{w}",
                "expr": (
                    f"histogram_quantile({quantile}, "
                    f"sum by ({b}, task, le) (rate(flower_task_runtime_seconds_bucket[{w}])))"
                ),
            }
        )
    return {"name": "celery-recording", "rules": rules}


# --- alerts ---------------------------------------------------------------------------------
def _dashboard_url(config: AlertingConfig, spec: AlertSpec, item: str) -> str:
    base = f"{config.grafana_base_url}/d/{spec.dashboard}"

    def broker(sep: str) -> str:  # the dashboard filtered on the alert's broker, when it has one
        return f"{{{{ with $labels.{BROKER_LABEL} }}}}{sep}var-{BROKER_LABEL}={{{{ . | urlquery }}}}{{{{ end }}}}"

    if spec.dashboard == OVERVIEW:
        return base + broker("?")
    if spec.scope is Scope.BEAT:
        return f"{base}?var-task={quote(item, safe='')}" + broker("&")
    return f"{base}?var-{spec.scope.value}={{{{ $labels.{spec.scope.value} | urlquery }}}}" + broker("&")


def _alert_rule(
    spec: AlertSpec,
    config: AlertingConfig,
    prof: Profile,
    params: Mapping[str, Any],
    matchers: tuple[str, ...],
    value: str | None = None,
    item: str = "",
    item_params: Mapping[str, Any] | None = None,
) -> Rule:
    label = spec.scope.value if spec.scope in (Scope.QUEUE, Scope.TASK) else None
    ctx = RuleContext(
        params=params,
        matchers=matchers,
        settings=config.settings,
        other=lambda alert: config.params(alert, label, value),
        item=item,
        item_params=item_params or {},
    )
    built = spec.build(ctx)
    # An override's rule names its label value: the series carry it already, so the alert is the
    # same, and the rule differs from the default one in its labels (promtool's duplicate lint).
    scoped = {label: value} if label and value is not None else {}
    return {
        "alert": spec.name,
        "expr": built.expr,
        "for": prof.for_of(spec.name, params),
        "labels": {"severity": spec.severity, **scoped, **built.labels},
        "annotations": {
            "summary": spec.summary,
            "description": built.description,
            "runbook_url": f"{config.runbook_base_url}#{spec.anchor}",
            "dashboard_url": _dashboard_url(config, spec, item),
        },
    }


def alert_rules(spec: AlertSpec, config: AlertingConfig, prof: Profile) -> list[Rule]:
    """One rule for the default parameters and one per overridden label value."""
    if spec.scope in (Scope.QUEUE, Scope.TASK):
        label = spec.scope.value
        values = config.override_values(label, (spec.name, *spec.depends_on))
        rules = [
            _alert_rule(spec, config, prof, config.params(spec.name), tuple(q.not_equal(label, v) for v in values))
        ]
        for v in values:
            params = config.params(spec.name, label, v)
            rules.append(_alert_rule(spec, config, prof, params, (q.equal(label, v),), value=v))
        return rules
    if spec.scope is Scope.BEAT:
        params = config.params(spec.name)
        return [
            _alert_rule(spec, config, prof, params, (), item=task, item_params={"period": period})
            for task, period in params["tasks"].items()
        ]
    return [_alert_rule(spec, config, prof, config.params(spec.name), ())]


def alert_groups(config: AlertingConfig, prof: Profile) -> list[Group]:
    hold = config.blind_hold
    groups: dict[str, list[Rule]] = {}
    # Held series first, in the same group as the alerts reading them: rules of one group run in
    # order at the same instant, so an alert never lags its recording rule by an interval.
    groups["celery-queues"] = [{"record": r, "expr": last_known_expr(m, hold)} for r, m in LAST_KNOWN.items()]
    groups["celery-workers"] = [{"record": r, "expr": last_known_expr(m, hold)} for r, m in WORKER_LAST_KNOWN.items()]
    for spec in ALERTS:
        groups.setdefault(spec.group, []).extend(alert_rules(spec, config, prof))
    return [{"name": name, "rules": rules} for name, rules in groups.items()]


def rule_files(config: AlertingConfig, prof: Profile) -> dict[str, list[Group]]:
    """File name -> its rule groups."""
    return {RECORDING_FILE: [recording_group(config)], ALERTS_FILE: alert_groups(config, prof)}
