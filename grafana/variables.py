"""Template variables: the datasource picker and the label-value filters (broker, queue, worker,
task), and how queries and legends keep brokers apart."""

from __future__ import annotations

import re
from typing import NamedTuple

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models import dashboard as dm

from grafana.alerting_layer import ALERTING
from grafana.ids import DATASOURCE, PROMETHEUS_UID
from prometheus.generate.catalog import BROKER_LABEL


class VariableSpec(NamedTuple):
    """A dashboard variable listing the values of `label` found on `selector`."""

    name: str
    label: str
    selector: str
    description: str


# Every query keeps to the selected brokers (`broker`, the label of the exporter's and Flower's
# targets); every series about a queue, worker or task is grouped by broker too, so two brokers'
# `default` queues are two series, named "default (payments)" and "default (orders)".
BROKER = f'{BROKER_LABEL}=~"$broker"'
# Targets that read no broker (Prometheus, Alertmanager) carry no broker label: this matches them too.
BROKER_OR_NONE = f'{BROKER_LABEL}=~"$broker|"'
_BROKER_JOBS = "|".join(ALERTING.settings["jobs"].values())
BROKER_VARIABLE = VariableSpec(
    BROKER_LABEL,
    BROKER_LABEL,
    f'up{{job=~"{_BROKER_JOBS}"}}',
    "Brokers: the broker label of the exporter's and Flower's Prometheus targets.",
)
QUEUE_VARIABLE = VariableSpec(
    "queue_name",
    "queue_name",
    f"celery_queue_length{{{BROKER}}}",
    "Queues known to the exporter (celery_queue_length).",
)
WORKER_VARIABLE = VariableSpec(
    "worker",
    "worker",
    f"flower_worker_online{{{BROKER}}}",
    "Workers Flower has seen (worker events); producers' hostnames are not listed.",
)
TASK_VARIABLE = VariableSpec("task", "task", f"flower_events_total{{{BROKER}}}", "Task names seen in Celery events.")


def on_broker(legend: str) -> str:
    """A legend naming the broker after the queue, worker or task: "default (payments)"."""
    return f"{legend} ({{{{{BROKER_LABEL}}}}})"


def series_of(name: str) -> str:
    """A regular expression for the series `on_broker` names after `name`, on any broker."""
    return f"^{re.escape(name)} \\(.*\\)$"


def datasource_variable() -> DatasourceVariable:
    """Pick the Prometheus to read from; defaults to the provisioned one (uid `prometheus`)."""
    return (
        DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dm.VariableOption(text="Prometheus", value=PROMETHEUS_UID))
    )


def label_variable(spec: VariableSpec) -> QueryVariable:
    """A multi-value variable over the values of `label` on `selector`, 'All' by default.

    All is `.*` rather than Grafana's list of the current values, so a queue or worker that
    appears after the page loaded is still included; queries therefore match it with =~.
    """
    query = f"label_values({spec.selector}, {spec.label})"
    return (
        QueryVariable(spec.name)
        .label(spec.name.replace("_", " ").capitalize())
        .description(spec.description)
        .datasource(DATASOURCE)
        .query(query)
        .definition(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(text=["All"], value=["$__all"]))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )
