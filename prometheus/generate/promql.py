"""Small PromQL and Prometheus-duration helpers shared by the catalog and the rule builder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def is_duration(text: object) -> bool:
    return isinstance(text, str) and bool(_DURATION.match(text))


def seconds(duration: str) -> float:
    """Seconds of a Prometheus duration such as 1h30m."""
    if not is_duration(duration):
        raise ValueError(f"{duration!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m)")
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(duration))


def duration(total_seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds: 90 -> 1m30s, 3600 -> 1h."""
    if total_seconds <= 0:
        return "0s"
    if total_seconds != int(total_seconds):
        return f"{round(total_seconds * 1000)}ms"
    rest = int(total_seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


def number(value: float) -> str:
    """A threshold as people write it: 1000, 0.5, 1e+06 never."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def percent(ratio: float) -> str:
    return f"{number(round(ratio * 100, 6))}%"


def string(value: str) -> str:
    """A PromQL string literal (double quotes; JSON escaping is valid PromQL escaping)."""
    return json.dumps(value, ensure_ascii=False)


def selector(metric: str, matchers: Iterable[str] = ()) -> str:
    parts = list(matchers)
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def equal(label: str, value: str) -> str:
    return f"{label}={string(value)}"


def not_equal(label: str, value: str) -> str:
    return f"{label}!={string(value)}"


def one_of(label: str, values: Iterable[str]) -> str:
    """`label=~"a|b"`, each value matched literally."""
    return f"{label}=~{string('|'.join(re.escape(v) for v in values))}"
