"""How values look on every dashboard: units, colours, threshold steps and value texts.

A unit, a colour or a warning step means the same thing on every dashboard. The red steps are
the alerts' thresholds (grafana.alerting_layer); the orange ones below them are fractions of
those, for display only.
"""

from __future__ import annotations

import enum

from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.models import dashboard as dm

from grafana.alerting_layer import BACKLOG_ALERT_THRESHOLD, FAILURE_RATIO_CRIT, OLDEST_WAIT_CRIT_S


class Unit(enum.StrEnum):
    """Grafana unit ids; `suffix:` is Grafana's custom-unit syntax."""

    COUNT = "short"  # tasks, queues, workers: a count, SI-scaled (1.2 K)
    TASKS_PER_S = "suffix:tasks/s"
    ERRORS_PER_S = "suffix:errors/s"
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


def fraction(value: float, divisor: int) -> float:
    """A display step below an alert threshold: whole when the threshold divides evenly."""
    return value // divisor if float(value).is_integer() and value % divisor == 0 else value / divisor


# Orange from half the backlog and failure-ratio thresholds, from a fifth of the waiting time.
BACKLOG_WARN = fraction(BACKLOG_ALERT_THRESHOLD, 2)
OLDEST_WAIT_WARN_S = fraction(OLDEST_WAIT_CRIT_S, 5)
FAILURE_RATIO_WARN = fraction(FAILURE_RATIO_CRIT, 2)
# No alert: where the exporter's own scrape becomes worth a look.
EXPORTER_SCRAPE_SLOW_S = 1.0


def thresholds(base: Color, *steps: tuple[float, Color]) -> ThresholdsConfig:
    """Absolute thresholds: `base` below the first step, then each (value, colour) from value up."""
    return (
        ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=None, color=base), *(dm.Threshold(value=v, color=c) for v, c in steps)])
    )


def backlog_colors(threshold: float) -> ThresholdsConfig:
    """Backlog bars and numbers: orange from half the alert threshold, red from it."""
    return thresholds(Color.OK, (fraction(threshold, 2), Color.WARN), (threshold, Color.BAD))


def any_is_bad() -> ThresholdsConfig:
    """A count of which any is bad: queues without consumers, firing alerts, errors."""
    return thresholds(Color.OK, (1, Color.BAD))


def none_is_bad() -> ThresholdsConfig:
    """A count of which none is bad (workers online), or a 0/1 state where 0 is bad (up)."""
    return thresholds(Color.BAD, (1, Color.OK))


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


UP_DOWN = value_texts({"0": ("DOWN", Color.BAD), "1": ("UP", Color.OK)})
ONLINE_OFFLINE = value_texts({"0": ("offline", Color.BAD), "1": ("online", Color.OK)})


def fixed_color(color: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]
