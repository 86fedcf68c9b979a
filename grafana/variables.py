"""Template variables: the datasource picker and the label-value filters (queue, worker, task)."""

from __future__ import annotations

from typing import NamedTuple

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models import dashboard as dm

from grafana.ids import DATASOURCE, PROMETHEUS_UID


class VariableSpec(NamedTuple):
    """A dashboard variable listing the values of `label` found on `selector`."""

    name: str
    label: str
    selector: str
    description: str


QUEUE_VARIABLE = VariableSpec(
    "queue_name", "queue_name", "celery_queue_length", "Queues known to the exporter (celery_queue_length)."
)
WORKER_VARIABLE = VariableSpec(
    "worker",
    "worker",
    "flower_worker_online",
    "Workers Flower has seen (worker events); producers' hostnames are not listed.",
)
TASK_VARIABLE = VariableSpec("task", "task", "flower_events_total", "Task names seen in Celery events.")


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
