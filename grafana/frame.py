"""The frame every dashboard shares: tags, time, refresh, links, the firing-alerts annotation and
the variables; and `finalize`, the last touches the builders cannot express."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, Dashboard, DashboardLink
from grafana_foundation_sdk.models import dashboard as dm

from grafana.ids import DATASOURCE, TAG
from grafana.style import Color
from grafana.variables import BROKER, BROKER_VARIABLE, VariableSpec, datasource_variable, label_variable


def firing_alerts_annotation() -> AnnotationQuery:
    """Marks on every graph while a Prometheus alert fires (e.g. CeleryQueueBacklog)."""
    return (
        AnnotationQuery()
        .name("Firing alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(Color.BAD)
        .expr(f'ALERTS{{alertstate="firing", {BROKER}}}')
        .title_format("{{alertname}}")
        .text_format("{{severity}} {{broker}} {{queue_name}}")
        .step("60s")
    )


def dashboard(uid: str, title: str, description: str, variables: Sequence[VariableSpec]) -> Dashboard:
    """The common frame: tags, time, refresh, variables (the broker first, on every dashboard),
    links to the other Celery dashboards."""
    builder = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        # Provisioned from code: edits in the UI would be lost on the next deploy.
        .readonly()
        .link(
            DashboardLink("Celery")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .annotation(firing_alerts_annotation())
        .with_variable(datasource_variable())
    )
    for spec in (BROKER_VARIABLE, *variables):
        builder = builder.with_variable(label_variable(spec))
    return builder


def finalize(model: dm.Dashboard) -> dm.Dashboard:
    """Last touches the builders cannot express.

    - Every panel gets a stable id (1, 2, ... in layout order): Grafana needs unique ids.
    - The SDK pins `placement: inControlsMenu` on links and annotations (a one-value enum of
      the schema); cleared so Grafana shows them above the panels, as it does by default.
    """
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    for link in model.links or []:
        link.placement = None  # type: ignore[assignment]
    for panel in model.panels or []:
        defaults = panel.field_config.defaults if getattr(panel, "field_config", None) else None
        for link in (defaults.links if defaults else None) or []:
            link.placement = None  # type: ignore[assignment]
    for annotation in (model.annotations.list_val if model.annotations else None) or []:
        annotation.placement = None
    return model
