"""Prometheus text format, fast for families of thousands of queues.

prometheus_client formats about 6 us per sample, 300 ms for 10,000 queues; a family held as
columns with its label text escaped once renders in a fraction of that. Every family still is a
prometheus_client Metric, so `prometheus_client.generate_latest` gives the same text (tests check it).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

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


class LabelText:
    """Escaped `name="value"` label text per queue, kept between scrapes and pruned to the live queues.

    The queue list rarely changes between scrapes: the texts of the last list asked for are kept
    whole, with their per-priority variant.
    """

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}
        self._last: tuple[list[str], list[str]] | None = None
        self._last_steps: tuple[list[str], tuple[str, ...], list[str]] | None = None
        self._heads: dict[str, tuple[list[str], list[str]]] = {}

    def queue(self, names: Sequence[str]) -> list[str]:
        last = self._last
        if last is not None and last[0] == names:
            return last[1]
        texts = self._texts(names)
        self._last = (list(names), texts)
        return texts

    def queue_and_step(self, names: Sequence[str], steps: Sequence[str]) -> list[str]:
        """`queue_name="q",priority="s"` for every queue, then step (queue-major)."""
        texts = self.queue(names)
        last = self._last_steps
        if last is not None and last[0] is texts and last[1] == tuple(steps):
            return last[2]
        suffixes = [f',priority="{escape_label_value(s)}"' for s in steps]
        combined = [t + suffix for t in texts for suffix in suffixes]
        self._last_steps = (texts, tuple(steps), combined)
        return combined

    def line_heads(self, sample_name: str, texts: list[str]) -> list[str]:
        """`sample_name{labels} ` for each label text, kept while the same texts list is given."""
        cached = self._heads.get(sample_name)
        if cached is not None and cached[0] is texts:
            return cached[1]
        heads = [f"{sample_name}{{{text}}} " for text in texts]
        self._heads[sample_name] = (texts, heads)
        return heads

    def _texts(self, names: Sequence[str]) -> list[str]:
        cache = self._cache
        if len(cache) > 2 * len(names) + 1000:
            cache = self._cache = {}
        out = []
        for name in names:
            text = cache.get(name)
            if text is None:
                safe = name.encode("utf-8", "replace").decode("utf-8")
                text = cache[name] = f'queue_name="{escape_label_value(safe)}"'
            out.append(text)
        return out


class ColumnFamily(Metric):
    """A metric family held as two columns: pre-escaped label text and values.

    `label_values` is called only when `.samples` is read, to build prometheus_client Samples.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        labelnames: Sequence[str],
        label_texts: Sequence[str],
        label_values: Callable[[], Iterable[Sequence[str]]] | None,
        values: Sequence[float],
        line_heads: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, documentation, typ)
        self.labelnames = tuple(labelnames)
        self.label_texts = label_texts
        self._label_values = label_values
        self.values = values
        self.line_heads = line_heads  # `name{labels} ` of every line, when kept from scrape to scrape

    # prometheus_client reads .samples; build them only when something asks (tests, other renderers).
    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        if self._label_values is None:
            return [Sample(self._sample_name, {}, float(v)) for v in self.values]
        return [
            Sample(self._sample_name, dict(zip(self.labelnames, lv, strict=True)), float(v))
            for lv, v in zip(self._label_values(), self.values, strict=True)
        ]

    @samples.setter
    def samples(self, _value: list[Sample]) -> None:  # Metric.__init__ assigns []
        pass

    @property
    def _sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def render(self) -> str:
        name = self._sample_name
        head = f"# HELP {name} {_escape_help(self.documentation)}\n# TYPE {name} {self.type}\n"
        if self.line_heads is not None:
            # head + value + newline for every line, joined without a Python-level loop
            return head + "".join(map(operator.add, self.line_heads, value_lines(self.values)))
        values = format_values(self.values)
        if self._label_values is None:
            return head + "".join([f"{name} {v}\n" for v in values])
        prefix = name + "{"
        return head + "".join([f"{prefix}{lt}}} {v}\n" for lt, v in zip(self.label_texts, values, strict=True)])


def gauge(name: str, documentation: str, value: float) -> ColumnFamily:
    return ColumnFamily(name, documentation, "gauge", (), [""], None, [value])


def labelled(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    label_values: Callable[[], Iterable[Sequence[str]]] | Sequence[Sequence[str]],
    values: Sequence[float],
    typ: str = "gauge",
    label_texts: Sequence[str] | None = None,
    line_heads: Sequence[str] | None = None,
) -> ColumnFamily:
    """A labelled family; give `label_texts` (pre-escaped) and a lazy `label_values` for speed."""
    if not callable(label_values):
        fixed = label_values
        label_values = lambda: fixed  # noqa: E731
    if label_texts is None:
        label_texts = [
            ",".join(f'{ln}="{escape_label_value(v)}"' for ln, v in zip(labelnames, lv, strict=True))
            for lv in label_values()
        ]
    return ColumnFamily(name, documentation, typ, labelnames, label_texts, label_values, values, line_heads)


class _One:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> list[Metric]:
        return [self.family]


def render(families: Iterable[Metric]) -> bytes:
    parts: list[bytes] = []
    for family in families:
        if isinstance(family, ColumnFamily):
            parts.append(family.render().encode("utf-8"))
        else:
            parts.append(generate_latest(_One(family)))  # type: ignore[arg-type]
    return b"".join(parts)
