"""Every query of the generated dashboards, with Grafana's variables substituted, ready to run
against a real Prometheus, and which of them a healthy stack may leave empty: the unit tests use
it to parse-check them, the tests against a live Prometheus to prove each panel shows data.

    from tests.grafana.queries import EmptyWhen, check_live, iter_queries

    for q in iter_queries():
        print(q.dashboard_uid, q.panel_title, q.expr, q.expects_data)

    problems = check_live("http://127.0.0.1:9090", start=load_started, end=time.time(),
                          expect_also={EmptyWhen.NO_FAILURE, EmptyWhen.NO_RETRY})
    assert not problems, "\\n".join(problems)
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests

from grafana.dashboards_src import DASHBOARDS
from grafana.generate import DASHBOARDS_DIR, filename
from grafana.ids import OVERVIEW_UID, QUEUES_UID, WORKERS_UID


class EmptyWhen(enum.StrEnum):
    """Why a query may legitimately return nothing in a healthy stack."""

    NO_ALERT = "no alert is firing"
    NO_FAILURE = "no task has failed since Flower started"
    NO_RETRY = "no task has been retried since Flower started"
    NOT_DRAINING = "no queue is shrinking right now"
    NO_TASK_SENT_EVENTS = "producers send no task-sent events (task_send_sent_event is off)"


# Per dashboard, the panels (or one query of a panel, by ref id) that a healthy stack may leave
# empty; every other query must show data.
EMPTY_OK: dict[str, dict[tuple[str, str | None], EmptyWhen]] = {
    OVERVIEW_UID: {
        ("Firing alerts", None): EmptyWhen.NO_ALERT,
    },
    QUEUES_UID: {
        ("Published vs consumed (all queues)", "C"): EmptyWhen.NO_TASK_SENT_EVENTS,
        ("Time to drain", None): EmptyWhen.NOT_DRAINING,
    },
    WORKERS_UID: {
        ("Retries by task", None): EmptyWhen.NO_RETRY,
        ("Failures by task", None): EmptyWhen.NO_FAILURE,
    },
}

# Grafana's built-in interval variables, as a test substitutes them (Grafana computes them
# from the time range and the scrape interval). 1m covers at least 4 scrapes at 15 s.
BUILTIN_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# The 'All' value of our multi-value variables (allValue), matched with =~.
ALL = ".*"

# $name, ${name}, ${name:format}, [[name]]: Grafana's three spellings of a variable.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)

Kind = Literal["panel", "variable", "annotation"]


@dataclass(frozen=True)
class DashboardQuery:
    """One query of a dashboard, substituted and ready for Prometheus' /api/v1/query."""

    dashboard_uid: str
    panel_title: str  # the panel's title; "$name" for a variable, the name of an annotation
    ref_id: str
    expr: str  # PromQL with the variables substituted
    raw: str  # as written in the dashboard
    expects_data: bool  # False when a healthy stack may show nothing here (see empty_when)
    empty_when: EmptyWhen | None
    kind: Kind
    instant: bool  # the panel asks for one value; otherwise a range (graph, sparkline)
    label: str | None = None  # variables: the label whose values the variable lists

    def where(self) -> str:
        return f"{self.dashboard_uid} / {self.kind} {self.panel_title!r} / {self.ref_id}"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables by `values`; an unknown variable is an error, not a guess."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(replace, text)


def variables_used(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def label_values_to_promql(definition: str) -> tuple[str, str]:
    """`label_values(selector, label)` -> (PromQL listing one series per value, label)."""
    match = _LABEL_VALUES.match(definition)
    if not match:
        raise ValueError(f"unsupported variable query (only label_values(...)): {definition!r}")
    label = match["label"]
    selector = match["selector"] or f'{{{label}!=""}}'
    return f"group by ({label}) ({selector})", label


def load_dashboards(dashboards_dir: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    """The committed dashboards (what Grafana loads), in the generator's order."""
    return [json.loads((dashboards_dir / filename(module)).read_text()) for module in DASHBOARDS]


def iter_queries(
    dashboards_dir: Path = DASHBOARDS_DIR, values: Mapping[str, str] | None = None
) -> Iterator[DashboardQuery]:
    """Every panel target, variable query and annotation query of every dashboard.

    Dashboard variables default to their All value (`.*`), built-ins to BUILTIN_VALUES;
    `values` overrides either (e.g. {"worker": "celery@w1"}).
    """
    for model in load_dashboards(dashboards_dir):
        uid = model["uid"]
        variables = [v for v in model["templating"]["list"] if v["type"] == "query"]
        vals = {**BUILTIN_VALUES, **{v["name"]: ALL for v in variables}, **(values or {})}
        empty_ok = EMPTY_OK[uid]

        for variable in variables:
            expr, label = label_values_to_promql(substitute(variable["definition"], vals))
            yield DashboardQuery(
                dashboard_uid=uid,
                panel_title=f"${variable['name']}",
                ref_id="var",
                expr=expr,
                raw=variable["definition"],
                expects_data=True,
                empty_when=None,
                kind="variable",
                instant=True,
                label=label,
            )

        for annotation in model.get("annotations", {}).get("list", []):
            if "expr" in annotation:
                yield DashboardQuery(
                    dashboard_uid=uid,
                    panel_title=annotation["name"],
                    ref_id="annotation",
                    expr=substitute(annotation["expr"], vals),
                    raw=annotation["expr"],
                    expects_data=False,
                    empty_when=EmptyWhen.NO_ALERT,
                    kind="annotation",
                    instant=False,
                )

        for panel in model["panels"]:
            for target in panel.get("targets", []):
                reason = empty_ok.get((panel["title"], target["refId"])) or empty_ok.get((panel["title"], None))
                yield DashboardQuery(
                    dashboard_uid=uid,
                    panel_title=panel["title"],
                    ref_id=target["refId"],
                    expr=substitute(target["expr"], vals),
                    raw=target["expr"],
                    expects_data=reason is None,
                    empty_when=reason,
                    kind="panel",
                    instant=bool(target.get("instant")),
                )


# --- running them against a live Prometheus ---------------------------------------------------


class QueryError(RuntimeError):
    """Prometheus refused or failed the query (a parse error is HTTP 400 'bad_data')."""


def run_query(
    base_url: str,
    expr: str,
    *,
    at: float | None = None,
    start: float | None = None,
    end: float | None = None,
    step: float | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Run one instant query (or a range query when start and end are given); the result list."""
    if start is not None and end is not None:
        step = step or max((end - start) / 250, 5.0)
        path, params = "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
    else:
        path, params = "/api/v1/query", {"query": expr, **({"time": at} if at is not None else {})}
    # POST, as Grafana does (httpMethod POST): long queries do not hit URL length limits.
    response = requests.post(base_url.rstrip("/") + path, data=params, timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        raise QueryError(f"HTTP {response.status_code}: {response.text[:300]}") from None
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType', response.status_code)}: {body.get('error', body)}")
    data = body["data"]
    if data["resultType"] == "scalar":  # e.g. `vector(0)` is a vector, but `1` is a scalar
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def check_live(
    base_url: str,
    *,
    start: float | None = None,
    end: float | None = None,
    values: Mapping[str, str] | None = None,
    expect_also: Collection[EmptyWhen] = (),
    dashboards_dir: Path = DASHBOARDS_DIR,
) -> list[str]:
    """Run every dashboard query; return the problems (an empty list means all is well).

    A problem is a query error, or no data from a query that should show data: those with
    expects_data, plus those whose EmptyWhen reason is in `expect_also` (e.g. the load did
    fail tasks, so 'Failures by task' must show them). Graph queries run over [start, end]
    when both are given (as Grafana draws them), single-value ones at `end` (default now).
    """
    end = end if end is not None else time.time()
    problems = []
    for q in iter_queries(dashboards_dir, values):
        as_range = start is not None and not q.instant
        try:
            if as_range:
                result = run_query(base_url, q.expr, start=start, end=end)
            else:
                result = run_query(base_url, q.expr, at=end)
        except (QueryError, requests.RequestException) as exc:
            problems.append(f"{q.where()}: {exc}\n    {q.expr}")
            continue
        must_show = q.expects_data or (q.empty_when is not None and q.empty_when in expect_also)
        if must_show and not result:
            problems.append(f"{q.where()}: no data\n    {q.expr}")
        elif q.kind == "variable" and must_show and not all(q.label in r["metric"] for r in result):
            problems.append(f"{q.where()}: series without label {q.label}\n    {q.expr}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.grafana.queries URL [MINUTES]`: check every query against a live Prometheus."""
    parser = argparse.ArgumentParser(prog="python -m tests.grafana.queries", description=main.__doc__)
    parser.add_argument("url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("minutes", nargs="?", type=float, default=15, help="graph range to check (default 15)")
    args = parser.parse_args(argv)
    now = time.time()
    problems = check_live(args.url, start=now - args.minutes * 60, end=now)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {sum(1 for _ in iter_queries())} queries")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
