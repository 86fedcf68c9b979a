"""Panel builders: a query, and the five kinds of panel the dashboards use (graph, big number,
bars, state timeline, table), each set up the same way (datasource, ref ids, size, empty text)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders.dashboard import DashboardLink, FieldColor, ThresholdsConfig
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from grafana.ids import DATASOURCE, QUEUES_UID
from grafana.style import UP_DOWN, Color, Unit, fixed_color, none_is_bad, thresholds
from grafana.variables import on_broker, series_of


def target(
    expr: str, legend: str = "__auto", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    """One PromQL query of a panel; ref ids are given by the panel builders, in order."""
    query = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    query = query.instant() if instant else query.range()
    if table_format:
        query = query.format(pm.PromQueryFormat.TABLE)
    return query


class _Builder(Protocol):
    """What every SDK panel builder offers (the methods the common set-up calls)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: cm.DataSourceRef) -> Self: ...
    def targets(self, targets: list[prometheus.Dataquery]) -> Self: ...
    def span(self, span: int) -> Self: ...
    def height(self, height: int) -> Self: ...
    def no_value(self, no_value: str) -> Self: ...
    def override_by_name(self, name: str, properties: list[dm.DynamicConfigValue]) -> Self: ...
    def override_by_regexp(self, regexp: str, properties: list[dm.DynamicConfigValue]) -> Self: ...


_B = TypeVar("_B", bound=_Builder)


def _panel(
    builder: _B,
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    width: int,
    height: int,
    no_value: str | None,
) -> _B:
    """The set-up every panel shares: words, datasource, its queries as A, B, ..., size, and the
    text shown when there is no data."""
    panel = (
        builder.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(chr(ord("A") + i)) for i, t in enumerate(targets)])
        .span(width)
        .height(height)
    )
    return panel.no_value(no_value) if no_value is not None else panel


def _thresholds_by_series(panel: _B, by_series: Mapping[str, ThresholdsConfig] | None) -> _B:
    """Per-series thresholds (a field override by display name, e.g. a queue with its own alert
    threshold, on every broker: "bulk (payments)", "bulk (orders)"): Grafana colours that series'
    bar, or draws its own dashed line, from them."""
    for name, steps in (by_series or {}).items():
        value = [dm.DynamicConfigValue(id_val="thresholds", value=steps.build())]
        panel = panel.override_by_regexp(series_of(name), value)
    return panel


def _last_value() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def link_to_queue(title: str = "Open this queue") -> list[DashboardLink]:
    """Data link from a per-queue value to the Queues dashboard filtered on that queue and its broker."""
    url = (
        f"/d/{QUEUES_UID}?var-queue_name=${{__field.labels.queue_name}}&var-broker=${{__field.labels.broker}}"
        "&${__url_time_range}"
    )
    return [DashboardLink(title).url(url)]


def timeseries_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: Unit,
    *,
    width: int = 12,
    height: int = 8,
    threshold_steps: ThresholdsConfig | None = None,
    stacked: bool = False,
    min_value: float | None = 0,
    legend_calcs: Sequence[str] = ("lastNotNull", "max"),
    colors: dict[str, str] | None = None,
    no_value: str | None = None,
    series_thresholds: Mapping[str, ThresholdsConfig] | None = None,
    right_axis: Mapping[str, Unit] | None = None,
) -> timeseries.Panel:
    """A graph; `threshold_steps` are drawn as dashed lines (e.g. the alert threshold), for every
    series but those named in `series_thresholds` (legend name -> their own steps). Series named
    in `right_axis` (legend name -> unit) are drawn against a second axis, on the right."""
    panel = (
        _panel(timeseries.Panel(), title, description, targets, width, height, no_value)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            sdk_common.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE if legend_calcs else cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs(list(legend_calcs))
        )
        .tooltip(sdk_common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if threshold_steps is not None:
        panel = panel.thresholds(threshold_steps).thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    if stacked:
        panel = panel.stacking(sdk_common.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(40)
    for name, color in (colors or {}).items():
        panel = panel.override_by_name(name, fixed_color(color))
    for name, axis_unit in (right_axis or {}).items():
        panel = panel.override_by_name(
            name,
            [
                dm.DynamicConfigValue(id_val="unit", value=str(axis_unit)),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        )
    return _thresholds_by_series(panel, series_thresholds)


def stat_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: Unit,
    steps: ThresholdsConfig,
    *,
    width: int = 4,
    height: int = 4,
    mappings: list[dm.ValueMapping] | None = None,
    sparkline: bool = True,
    text_mode: cm.BigValueTextMode = cm.BigValueTextMode.AUTO,
    no_value: str | None = None,
    decimals: int | None = None,
) -> stat.Panel:
    """One big number (or one per series), coloured by `steps`, last value of the range."""
    panel = (
        _panel(stat.Panel(), title, description, targets, width, height, no_value)
        .unit(unit)
        .thresholds(steps)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA if sparkline else cm.BigValueGraphMode.NONE)
        .text_mode(text_mode)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(_last_value())
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def up_down_stat(title: str, description: str, expr: str, legend: str, **options: object) -> stat.Panel:
    """UP or DOWN per series of a 0/1 `expr`; no data at all is bad too."""
    options = {"height": 6, "sparkline": False, **options}
    return stat_panel(
        title,
        description,
        [target(expr, legend)],
        Unit.STATE,
        none_is_bad(),
        mappings=UP_DOWN,
        **options,  # type: ignore[arg-type]
    )


def count_stat(
    title: str, description: str, expr: str, legend: str, steps: ThresholdsConfig, **options: object
) -> stat.Panel:
    """A whole number of things (queues, workers, alerts) as one big number coloured by `steps`."""
    return stat_panel(title, description, [target(expr, legend)], Unit.COUNT, steps, decimals=0, **options)  # type: ignore[arg-type]


def consumers_graph(title: str, description: str, expr: str, **options: object) -> timeseries.Panel:
    """Workers consuming each queue (`expr` by broker and queue_name); below the dashed red line at 1
    nobody does."""
    return timeseries_panel(
        title,
        description,
        [target(expr, on_broker("{{queue_name}}"))],
        Unit.COUNT,
        width=8,
        threshold_steps=thresholds(Color.NONE, (1, Color.BAD)),
        **options,  # type: ignore[arg-type]
    )


def bargauge_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: Unit,
    steps: ThresholdsConfig,
    *,
    width: int = 8,
    height: int = 8,
    links: list[DashboardLink] | None = None,
    no_value: str | None = None,
    series_thresholds: Mapping[str, ThresholdsConfig] | None = None,
) -> bargauge.Panel:
    """One horizontal bar per series (e.g. per queue), coloured by `steps`, or by their own steps
    for the series named in `series_thresholds`."""
    panel = (
        _panel(bargauge.Panel(), title, description, targets, width, height, no_value)
        .unit(unit)
        .thresholds(steps)
        .min(0)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(_last_value())
    )
    if links:
        panel = panel.data_links(links)
    return _thresholds_by_series(panel, series_thresholds)


def state_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    mappings: list[dm.ValueMapping],
    *,
    width: int = 8,
    height: int = 7,
) -> statetimeline.Panel:
    """A state timeline: one row per series, coloured by the value mappings (e.g. online/offline)."""
    return (
        _panel(statetimeline.Panel(), title, description, targets, width, height, None)
        .unit(Unit.STATE)
        .mappings(mappings)
        .thresholds(thresholds(Color.MUTED))
        .color_scheme(FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.9)
        .fill_opacity(80)
        .legend(sdk_common.VizLegendOptions().show_legend(False))
    )


def table_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 24,
    height: int = 7,
    transformations: Sequence[dm.DataTransformerConfig] = (),
    unit: Unit | None = None,
    decimals: int | None = None,
    units: dict[str, Unit] | None = None,
    no_value: str | None = None,
) -> table.Panel:
    """A table of instant results; `unit` for all cells, `units` per column name."""
    panel = (
        _panel(table.Panel(), title, description, targets, width, height, no_value)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .transformations(list(transformations))
    )
    if unit is not None:
        panel = panel.unit(unit)
    if decimals is not None:
        panel = panel.decimals(decimals)
    for column, column_unit in (units or {}).items():
        panel = panel.override_by_name(column, [dm.DynamicConfigValue(id_val="unit", value=str(column_unit))])
    return panel


def organize(
    exclude: Sequence[str] = (), order: Sequence[str] = (), rename: dict[str, str] | None = None
) -> dm.DataTransformerConfig:
    """Grafana's 'Organize fields' transformation: hide, order and rename table columns."""
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": {name: True for name in exclude},
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": rename or {},
        },
    )
