"""Building blocks shared by the dashboards: datasource, variables, units, thresholds, panels.

Every dashboard module imports from here so that a unit, a colour or a threshold means the
same thing on every dashboard. Alert thresholds and recording rule names are not written here:
they come from prometheus/alerting.yml through prometheus.generate, as the alert rules do.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    FieldColor,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from prometheus.generate import AlertingConfig, promql
from prometheus.generate import load as load_alerting
from prometheus.generate.rules import recording_group

# Fixed uids: alert annotations (dashboard_url) and hand-made links point at these, so a
# renamed title never breaks a link. provisioning/datasources/datasources.yml uses the same.
PROMETHEUS_UID = "prometheus"
ALERTMANAGER_UID = "alertmanager"
OVERVIEW_UID = "celery-overview"
QUEUES_UID = "celery-queues"
WORKERS_UID = "celery-workers"
TAG = "celery"

# Panels query the datasource picked in the `datasource` variable (default: the provisioned one).
DATASOURCE = cm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# --- the alerting layer ---------------------------------------------------------------------
# prometheus/alerting.yml is the one source of the alert thresholds, `for:` durations and
# per-queue overrides; prometheus.generate turns it into the rules. The dashboards read the same
# file through the same code, so a threshold drawn on a panel and the alert cannot drift apart.
ALERTING: AlertingConfig = load_alerting()
# Window of the task rate recording rules (their names end in rate5m / increase5m).
RATE_WINDOW: str = ALERTING.rate_window
# Recording rules that prometheus.generate writes (prometheus/rules/<profile>/celery-recording.yml).
RECORDING_RULES: frozenset[str] = frozenset(rule["record"] for rule in recording_group(ALERTING)["rules"])


def recorded(name: str) -> str:
    """The name of a recording rule of the alerting layer; an error if the generator has none."""
    if name not in RECORDING_RULES:
        raise LookupError(f"no recording rule {name!r} in prometheus.generate (has: {sorted(RECORDING_RULES)})")
    return name


class Rec:
    """The recording rules the dashboards read instead of the raw metrics (same series as the alerts).

    Task rules aggregate `worker` away (task-sent events carry the producer's hostname): a panel
    reading them shows all workers, whatever the $worker variable says.
    """

    QUEUE_LENGTH = recorded("queue_name:celery_queue_length:sum")  # by queue_name
    EVENTS_RATE = recorded(f"task_type:flower_events:rate{RATE_WINDOW}")  # by task, type
    RUNTIME_P50 = recorded(f"task:flower_task_runtime_seconds:p50_rate{RATE_WINDOW}")  # by task
    RUNTIME_P90 = recorded(f"task:flower_task_runtime_seconds:p90_rate{RATE_WINDOW}")
    RUNTIME_P99 = recorded(f"task:flower_task_runtime_seconds:p99_rate{RATE_WINDOW}")


def fraction(value: float, divisor: int) -> float:
    """A display step below an alert threshold: whole when the threshold divides evenly."""
    return value // divisor if float(value).is_integer() and value % divisor == 0 else value / divisor


@dataclass(frozen=True)
class QueueThreshold:
    """The threshold of a per-queue alert: its default, and the queues with their own.

    The generator writes one rule for the default (`queue_name!="bulk"`) and one per overridden
    queue (`queue_name="bulk"`); `exceeded()` is the same split in PromQL.
    """

    alert: str
    default: float
    for_: str  # production's `for:`
    overrides: Mapping[str, float]  # queue_name -> its own threshold (only those that differ)

    def exceeded(self, metric: str, matchers: Sequence[str] = ()) -> str:
        """PromQL: the series of `metric` (by queue_name) above their queue's threshold."""
        if not self.overrides:
            return f"{promql.selector(metric, matchers)} > {promql.number(self.default)}"
        rest = [*matchers, *(promql.not_equal("queue_name", q) for q in self.overrides)]
        parts = [f"{promql.selector(metric, rest)} > {promql.number(self.default)}"]
        parts += [
            f"{promql.selector(metric, [*matchers, promql.equal('queue_name', q)])} > {promql.number(t)}"
            for q, t in self.overrides.items()
        ]
        return " or ".join(parts)

    def steps(self, make: Callable[[float], ThresholdsConfig]) -> tuple[ThresholdsConfig, dict[str, ThresholdsConfig]]:
        """`make(threshold)` for the default, and per overridden queue (a series named after it)."""
        return make(self.default), {queue: make(t) for queue, t in self.overrides.items()}

    def listing(self, unit: str = "") -> str:
        """The overridden queues for a description, e.g. 'bulk: 50000'; '' when there is none."""
        return ", ".join(f"{q}: {promql.number(t)}{unit}" for q, t in self.overrides.items())


def queue_threshold(alert: str) -> QueueThreshold:
    default = ALERTING.params(alert)
    overrides = {}
    for queue in ALERTING.override_values("queue_name", (alert,)):
        threshold = ALERTING.params(alert, "queue_name", queue)["threshold"]
        if threshold != default["threshold"]:
            overrides[queue] = threshold
    return QueueThreshold(alert, default["threshold"], default["for"], overrides)


# CeleryQueueBacklog: celery_queue_length above this for `for:`; graphs draw the line.
BACKLOG = queue_threshold("CeleryQueueBacklog")
BACKLOG_ALERT_THRESHOLD = BACKLOG.default
BACKLOG_WARN = fraction(BACKLOG_ALERT_THRESHOLD, 2)
# CeleryQueueLatencyHigh: the oldest ready task older than this (seconds) turns red; orange earlier.
LATENCY = queue_threshold("CeleryQueueLatencyHigh")
OLDEST_WAIT_CRIT_S = LATENCY.default
OLDEST_WAIT_WARN_S = fraction(OLDEST_WAIT_CRIT_S, 5)
# Celery's Redis transport redelivers a task still unacknowledged after visibility_timeout
# (default one hour): an unacked message that old is about to run twice. CeleryUnackedStuck
# fires past it (threshold null: the visibility timeout the exporter reports, drawn at kombu's
# default), or past its own threshold when alerting.yml sets one.
KOMBU_VISIBILITY_TIMEOUT_S = 3600
UNACKED_ALERT_THRESHOLD_S: float | None = ALERTING.params("CeleryUnackedStuck")["threshold"]
VISIBILITY_TIMEOUT_S = UNACKED_ALERT_THRESHOLD_S or KOMBU_VISIBILITY_TIMEOUT_S
# CeleryTaskFailureRateHigh: failed / finished per task over rate_window; red from it, orange from half.
FAILURE_RATIO_CRIT = ALERTING.params("CeleryTaskFailureRateHigh")["threshold"]
FAILURE_RATIO_WARN = fraction(FAILURE_RATIO_CRIT, 2)
EXPORTER_SCRAPE_SLOW_S = 1.0


class Unit(enum.StrEnum):
    """Grafana unit ids; `suffix:` is Grafana's custom-unit syntax."""

    COUNT = "short"  # tasks, queues, workers: a count, SI-scaled (1.2 K)
    TASKS_PER_S = "suffix:tasks/s"
    SECONDS = "s"
    RATIO = "percentunit"
    TIME_AGO = "dateTimeFromNow"  # value is a Unix time in ms
    STATE = "none"  # 0/1 values shown through value mappings


class Color(enum.StrEnum):
    OK = "green"
    WARN = "orange"
    BAD = "red"
    INFO = "blue"
    MUTED = "text"
    EXTRA = "purple"
    NONE = "transparent"


class EmptyWhen(enum.StrEnum):
    """Why a query may legitimately return nothing in a healthy stack (see grafana/queries.py)."""

    NO_ALERT = "no alert is firing"
    NO_FAILURE = "no task has failed since Flower started"
    NO_RETRY = "no task has been retried since Flower started"
    NOT_DRAINING = "no queue is shrinking right now"
    NO_TASK_SENT_EVENTS = "producers send no task-sent events (task_send_sent_event is off)"


# --- queries --------------------------------------------------------------------------------


def target(
    expr: str, legend: str = "__auto", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    """One PromQL query of a panel; ref ids are given by the panel helpers, in order."""
    query = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    query = query.instant() if instant else query.range()
    if table_format:
        query = query.format(pm.PromQueryFormat.TABLE)
    return query


def _ref_id(index: int) -> str:
    return chr(ord("A") + index)


# --- field config -----------------------------------------------------------------------------


def thresholds(base: Color, *steps: tuple[float, Color]) -> ThresholdsConfig:
    """Absolute thresholds: `base` below the first step, then each (value, colour) from value up."""
    return (
        ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=None, color=base), *(dm.Threshold(value=v, color=c) for v, c in steps)])
    )


def value_texts(texts: dict[str, tuple[str, Color]]) -> list[dm.ValueMapping]:
    """Show e.g. 1 as UP (green) instead of the number."""
    return [
        dm.ValueMap(
            options={
                value: dm.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(texts.items())
            }
        )
    ]


def nan_text(text: str) -> list[dm.ValueMapping]:
    """Show NaN (e.g. a ratio over no finished task) as words rather than 'NaN'."""
    return [
        dm.SpecialValueMap(
            options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.NA_N, result=dm.ValueMappingResult(text=text, color=Color.MUTED)
            )
        )
    ]


def backlog_colors(threshold: float) -> ThresholdsConfig:
    """Backlog bars and numbers: orange from half the alert threshold, red from it."""
    return thresholds(Color.OK, (fraction(threshold, 2), Color.WARN), (threshold, Color.BAD))


UP_DOWN = value_texts({"0": ("DOWN", Color.BAD), "1": ("UP", Color.OK)})
ONLINE_OFFLINE = value_texts({"0": ("offline", Color.BAD), "1": ("online", Color.OK)})


def fixed_color(color: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]


_P = TypeVar("_P", timeseries.Panel, bargauge.Panel)


def _thresholds_by_series(panel: _P, by_series: Mapping[str, ThresholdsConfig] | None) -> _P:
    """Per-series thresholds (a field override by display name, e.g. a queue with its own alert
    threshold): Grafana colours that series' bar, or draws its own dashed line, from them."""
    for name, steps in (by_series or {}).items():
        panel = panel.override_by_name(name, [dm.DynamicConfigValue(id_val="thresholds", value=steps.build())])
    return panel


def link_to_queue(title: str = "Open this queue") -> list[DashboardLink]:
    """Data link from a per-queue value to the Queues dashboard filtered on that queue."""
    url = f"/d/{QUEUES_UID}?var-queue_name=${{__field.labels.queue_name}}&${{__url_time_range}}"
    return [DashboardLink(title).url(url)]


# --- panels -----------------------------------------------------------------------------------


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
) -> timeseries.Panel:
    """A graph; `threshold_steps` are drawn as dashed lines (e.g. the alert threshold), for every
    series but those named in `series_thresholds` (legend name -> their own steps)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(_ref_id(i)) for i, t in enumerate(targets)])
        .unit(unit)
        .span(width)
        .height(height)
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
    panel = _thresholds_by_series(panel, series_thresholds)
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


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
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(_ref_id(i)) for i, t in enumerate(targets)])
        .unit(unit)
        .thresholds(steps)
        .span(width)
        .height(height)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA if sparkline else cm.BigValueGraphMode.NONE)
        .text_mode(text_mode)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if no_value is not None:
        panel = panel.no_value(no_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


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
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(_ref_id(i)) for i, t in enumerate(targets)])
        .unit(unit)
        .thresholds(steps)
        .min(0)
        .span(width)
        .height(height)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if links:
        panel = panel.data_links(links)
    panel = _thresholds_by_series(panel, series_thresholds)
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def state_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    mappings: list[dm.ValueMapping],
    *,
    width: int = 12,
    height: int = 8,
) -> statetimeline.Panel:
    """A state timeline: one row per series, coloured by the value mappings (e.g. online/offline)."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(_ref_id(i)) for i, t in enumerate(targets)])
        .unit(Unit.STATE)
        .mappings(mappings)
        .thresholds(thresholds(Color.MUTED))
        .color_scheme(FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .span(width)
        .height(height)
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
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([t.ref_id(_ref_id(i)) for i, t in enumerate(targets)])
        .span(width)
        .height(height)
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
    if no_value is not None:
        panel = panel.no_value(no_value)
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


# --- dashboard ----------------------------------------------------------------------------------


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


def firing_alerts_annotation() -> AnnotationQuery:
    """Marks on every graph while a Prometheus alert fires (e.g. CeleryQueueBacklog)."""
    return (
        AnnotationQuery()
        .name("Firing alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(Color.BAD)
        .expr('ALERTS{alertstate="firing"}')
        .title_format("{{alertname}}")
        .text_format("{{severity}} {{queue_name}}")
        .step("60s")
    )


def dashboard(uid: str, title: str, description: str, variables: Sequence[VariableSpec]) -> Dashboard:
    """The common frame: tags, time, refresh, variables, links to the other Celery dashboards."""
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
    for spec in variables:
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
