"""Prometheus text format, fast for families of thousands of queues: `Renderer.render` is the one
entry point, and the only place that keeps rendering caches.

prometheus_client formats about 6 us per sample, 300 ms for 10,000 queues. Here a family is held
as label columns and values (`ColumnFamily`); the `name{labels} ` head of each line is built once
and kept from scrape to scrape while the family's label columns stay equal, so a scrape only
formats values. Every family still is a prometheus_client Metric, so
`prometheus_client.generate_latest` gives the same text (tests compare the two; values are written
in their shortest exact form, `1` where prometheus_client writes `1.0`).

A Renderer belongs to one target (one broker): its caches are bounded by that target's queues.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from itertools import repeat

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from celery_queue_exporter.metrics import MetricDef

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)  # the shortest round-tripping form, as Go and prometheus_client write it


_INF = float("inf")


def format_values(values: Sequence[float]) -> list[str]:
    """All values as text: str() of ints and repr() of finite floats run in C, hence the fast path."""
    types = set(map(type, values))
    if types == {int}:
        return list(map(str, values))
    if types == {float} and math.isfinite(math.fsum(values)):  # no inf or nan among them
        return list(map(repr, values))
    return [format_value(v) for v in values]


_INT_LINES = [f"{i}\n" for i in range(4096)]


def value_lines(values: Sequence[float]) -> Iterable[str]:
    """Each value as text with its newline; small non-negative ints (most queue numbers) come ready-made."""
    if not values:
        return ()
    types = set(map(type, values))
    if types == {int} and min(values) >= 0 and max(values) < len(_INT_LINES):
        return map(_INT_LINES.__getitem__, values)
    if types == {float} and not any(values):
        return repeat("0.0\n", len(values))
    return [text + "\n" for text in format_values(values)]


class ColumnFamily(Metric):
    """A metric family held as label columns and values.

    The label sets are the product of `columns` (one per label name of `metric`, the first one
    outermost): `(queues,)` gives one line per queue, `(queues, steps)` one per queue and step,
    queue-major; no columns give the one line of an unlabelled metric. `values` follows that order.
    """

    def __init__(self, metric: MetricDef, columns: Sequence[Sequence[str]], values: Sequence[float]) -> None:
        super().__init__(metric.name, metric.help, metric.type)
        if len(columns) != len(metric.labels):
            raise ValueError(f"{metric.name}: {len(columns)} label columns for labels {metric.labels}")
        self.metric = metric
        self.labelnames = metric.labels
        self.columns = tuple(columns)
        self.values = values

    # prometheus_client reads .samples; build them only when something asks (tests, other renderers).
    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        name = self.sample_name
        return [
            Sample(name, dict(zip(self.labelnames, lv, strict=True)), float(v))
            for lv, v in zip(itertools.product(*self.columns), self.values, strict=True)
        ]

    @samples.setter
    def samples(self, _value: list[Sample]) -> None:  # Metric.__init__ assigns []
        pass

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name


def gauge(metric: MetricDef, value: float) -> ColumnFamily:
    return ColumnFamily(metric, (), [value])


class Renderer:
    """Renders families to Prometheus text, keeping each family's line heads between scrapes.

    Caches, both bounded by the live label values: the line heads of each family (one entry per
    metric name, reused while its label columns compare equal), and the escaped `name="value"`
    text of each label value (reset when it outgrows the values in use).
    """

    def __init__(self) -> None:
        self._heads: dict[str, tuple[tuple[list[str], ...], list[str]]] = {}
        self._label_text: dict[str, dict[str, str]] = {}
        self._last_texts: dict[str, tuple[list[str], list[str]]] = {}  # label -> (values, texts) last built
        self.misses = 0  # line heads rebuilt: a scrape over unchanged queues adds none

    def render(self, families: Iterable[Metric]) -> bytes:
        parts: list[bytes] = []
        for family in families:
            if isinstance(family, ColumnFamily):
                parts.append(self._render(family).encode("utf-8"))
            else:
                parts.append(generate_latest(_One(family)))  # type: ignore[arg-type]
        return b"".join(parts)

    def cache_sizes(self) -> dict[str, int]:
        return {
            "line_heads": sum(len(heads) for _, heads in self._heads.values()),
            "label_text": sum(map(len, self._label_text.values())),
        }

    def _render(self, family: ColumnFamily) -> str:
        name = family.sample_name
        head = f"# HELP {name} {_escape_help(family.documentation)}\n# TYPE {name} {family.type}\n"
        heads = self._line_heads(name, family)
        # head + value + newline for every line, joined without a Python-level loop
        return head + "".join(map(operator.add, heads, value_lines(family.values)))

    def _line_heads(self, name: str, family: ColumnFamily) -> list[str]:
        columns = family.columns
        cached = self._heads.get(name)
        # list == list compares element identity first: ~20 us for 10,000 unchanged queues
        if cached is not None and cached[0] == tuple(col if type(col) is list else list(col) for col in columns):
            return cached[1]
        self.misses += 1
        if not columns:
            heads = [name + " "]
        else:
            texts = [self._texts(ln, col) for ln, col in zip(family.labelnames, columns, strict=True)]
            if len(texts) == 1:
                heads = [f"{name}{{{t}}} " for t in texts[0]]
            else:
                heads = [f"{name}{{{','.join(parts)}}} " for parts in itertools.product(*texts)]
        self._heads[name] = (tuple(list(col) for col in columns), heads)
        return heads

    def _texts(self, label: str, values: Sequence[str]) -> list[str]:
        last = self._last_texts.get(label)
        if last is not None and last[0] == (values if type(values) is list else list(values)):
            return last[1]  # the per-queue families share one queue column: build its texts once
        cache = self._label_text.get(label)
        if cache is None or len(cache) > 2 * len(values) + 1000:
            cache = self._label_text[label] = {}
        out = []
        for value in values:
            text = cache.get(value)
            if text is None:
                safe = value.encode("utf-8", "replace").decode("utf-8")
                text = cache[value] = f'{label}="{escape_label_value(safe)}"'
            out.append(text)
        self._last_texts[label] = (list(values), out)
        return out


class _One:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> list[Metric]:
        return [self.family]
