"""The committed dashboards are what the generator makes, and are well-formed: fixed uids,
variables, units, descriptions, layout, and PromQL that a real Prometheus accepts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import generate
from grafana.alerting_layer import (
    BACKLOG,
    BACKLOG_ALERT_THRESHOLD,
    FAILURE_RATIO_CRIT,
    LATENCY,
    OLDEST_WAIT_CRIT_S,
    RECORDING_RULES,
    Rec,
)
from grafana.dashboards_src import DASHBOARDS
from grafana.generate import DASHBOARDS_DIR
from prometheus import generate as alerting
from tests.grafana.prom import running_prometheus
from tests.grafana.queries import (
    BUILTIN_VALUES,
    EMPTY_OK,
    QueryError,
    iter_queries,
    load_dashboards,
    run_query,
    substitute,
    variables_used,
)
from tests.support.procs import REPO

EXPECTED_UIDS = {"celery-overview", "celery-queues", "celery-workers"}
# Variables each dashboard must offer (all of them: datasource, broker, queue_name, worker, task).
EXPECTED_VARIABLES = {
    "celery-overview": {"datasource", "broker", "queue_name"},
    "celery-queues": {"datasource", "broker", "queue_name"},
    "celery-workers": {"datasource", "broker", "worker", "task"},
}
NUMERIC_PANELS = {"timeseries", "stat", "bargauge", "state-timeline", "table"}


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


@pytest.fixture(scope="module")
def dashboards() -> list[dict[str, Any]]:
    return load_dashboards()


def test_generated_equals_committed(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path), "--no-readme"]) == 0
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    assert generated == committed, "run `make dashboards` and commit grafana/dashboards/"
    for name in generated:
        assert (tmp_path / name).read_text() == (DASHBOARDS_DIR / name).read_text(), (
            f"grafana/dashboards/{name} is stale: run `make dashboards`"
        )


def test_check_passes_on_the_committed_tree(capsys: pytest.CaptureFixture[str]) -> None:
    # The README's generated panel list is compared too.
    assert generate.main(["--check"]) == 0, capsys.readouterr().err


def test_check_names_stale_missing_and_extra_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in DASHBOARDS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "celery-queues.json").write_text("{}\n")
    (tmp_path / "celery-workers.json").unlink()
    (tmp_path / "old-dashboard.json").write_text("{}\n")

    assert generate.main(["--check", "--out", str(tmp_path), "--no-readme"]) == 1
    err = capsys.readouterr().err
    assert "celery-queues.json: differs" in err
    assert "celery-workers.json: missing" in err
    assert "old-dashboard.json: not produced by the generator" in err
    assert "celery-overview.json" not in err


def test_fixed_uids_and_file_names(dashboards: list[dict[str, Any]]) -> None:
    assert {d["uid"] for d in dashboards} == EXPECTED_UIDS
    for model in dashboards:
        assert (DASHBOARDS_DIR / f"{model['uid']}.json").exists()
        assert "celery" in model["tags"]


def test_variables(dashboards: list[dict[str, Any]]) -> None:
    for model in dashboards:
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert set(variables) == EXPECTED_VARIABLES[model["uid"]], model["uid"]
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        assert ds["current"]["value"] == "prometheus", "defaults to the provisioned datasource uid"
        for name, variable in variables.items():
            if name == "datasource":
                continue
            assert variable["type"] == "query"
            assert variable["multi"] and variable["includeAll"], f"{model['uid']}: ${name} must be multi + All"
            assert variable["allValue"] == ".*"
            assert variable["definition"].startswith("label_values(")
            assert variable["datasource"]["uid"] == "${datasource}"


def test_every_variable_is_used_and_every_use_is_defined(dashboards: list[dict[str, Any]]) -> None:
    builtins = set(BUILTIN_VALUES)
    for model in dashboards:
        defined = {v["name"] for v in model["templating"]["list"]}
        used: set[str] = set()
        for panel in panels(model):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for target in panel["targets"]:
                used |= variables_used(target["expr"])
                assert target["datasource"]["uid"] == "${datasource}"
        assert used - builtins <= defined, f"{model['uid']} uses undefined {used - builtins - defined}"
        assert defined - {"datasource"} <= used, f"{model['uid']} never uses {defined - {'datasource'} - used}"


def test_multi_value_variables_are_matched_as_regexes(dashboards: list[dict[str, Any]]) -> None:
    # 'All' is `.*` and several values are `(a|b)`: only =~ matches them.
    for model in dashboards:
        names = [v["name"] for v in model["templating"]["list"] if v["type"] == "query"]
        for panel in panels(model):
            for target in panel["targets"]:
                for name in names:
                    for use in re.finditer(rf'(\w+)\s*(=~|!~|=|!=)\s*"\$\{{?{name}\}}?"', target["expr"]):
                        assert use.group(2) == "=~", f"{panel['title']}: {use.group(0)}"


def test_units_descriptions_ids_and_titles(dashboards: list[dict[str, Any]]) -> None:
    for model in dashboards:
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, f"{model['uid']}: panel ids must be unique"
        titles = [p["title"] for p in panels(model)]
        assert len(titles) == len(set(titles)), f"{model['uid']}: duplicate panel titles"
        for panel in panels(model):
            where = f"{model['uid']} / {panel['title']}"
            assert panel["type"] in NUMERIC_PANELS, where
            assert panel.get("description", "").strip(), f"{where}: no description"
            if panel["type"] != "table":
                assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(ref_ids) == len(set(ref_ids)), where
            if panel["type"] == "timeseries":
                assert panel["options"]["legend"]["showLegend"], f"{where}: legend hidden"


def test_layout_fits_the_grid_without_overlaps(dashboards: list[dict[str, Any]]) -> None:
    for model in dashboards:
        taken: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{model['uid']} / {panel['title']}"
            cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
            assert not cells & taken, f"{model['uid']} / {panel['title']} overlaps another panel"
            taken |= cells


def panel(dashboards: list[dict[str, Any]], uid: str, title: str) -> dict[str, Any]:
    model = next(d for d in dashboards if d["uid"] == uid)
    return next(p for p in model["panels"] if p["title"] == title)


def steps(thresholds: dict[str, Any]) -> list[float | None]:
    return [s["value"] for s in thresholds["steps"]]


def own_thresholds(panel: dict[str, Any]) -> dict[str, list[float | None]]:
    """Queue -> the steps of its own thresholds (a field override matching that queue's series on
    every broker, legend "<queue> (<broker>)")."""
    out = {}
    for override in panel["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if override["matcher"]["id"] == "byRegexp" and prop["id"] == "thresholds":
                pattern = override["matcher"]["options"]
                queue = re.fullmatch(r"\^(.+) \\\(\.\*\\\)\$", pattern).group(1).replace("\\", "")
                assert re.fullmatch(pattern, f"{queue} (payments)") and not re.fullmatch(pattern, f"x{queue} (p)")
                out[queue] = steps(prop["value"])
    return out


def alerting_yml() -> dict[str, Any]:
    """prometheus/alerting.yml as plain YAML: not through prometheus.generate, which the
    dashboards read it with, so a fault in that path cannot agree with itself."""
    return yaml.safe_load((REPO / "prometheus" / "alerting.yml").read_text())


def red_step(dashboards: list[dict[str, Any]], uid: str, title: str) -> float | None:
    return steps(panel(dashboards, uid, title)["fieldConfig"]["defaults"]["thresholds"])[-1]


def test_thresholds_come_from_the_alerting_config(dashboards: list[dict[str, Any]]) -> None:
    """The committed dashboards turn red where alerting.yml's alerts fire: defaults, and the
    queues with their own threshold (overrides) on their own series."""
    config = alerting_yml()
    alerts = config["alerts"]
    queues = (config.get("overrides") or {}).get("queue_name") or {}

    def own(alert: str) -> dict[str, float]:
        default = alerts[alert]["threshold"]
        return {
            q: a[alert]["threshold"] for q, a in queues.items() if a.get(alert, {}).get("threshold", default) != default
        }

    backlog = alerts["CeleryQueueBacklog"]["threshold"]
    for uid, title in (("celery-overview", "Backlog per queue"), ("celery-queues", "Backlog now")):
        assert red_step(dashboards, uid, title) == backlog, title
        assert {q: s[-1] for q, s in own_thresholds(panel(dashboards, uid, title)).items()} == own(
            "CeleryQueueBacklog"
        ), title
    assert red_step(dashboards, "celery-queues", "Backlog per queue") == backlog
    over = panel(dashboards, "celery-overview", "Queues over threshold")["targets"][0]["expr"]
    assert f"> {backlog}" in over
    for queue, threshold in own("CeleryQueueBacklog").items():
        assert f'queue_name="{queue}"}} > {threshold}' in over, queue

    latency = alerts["CeleryQueueLatencyHigh"]["threshold"]
    assert red_step(dashboards, "celery-overview", "Oldest waiting task") == latency
    waiting = panel(dashboards, "celery-queues", "Oldest waiting message age")
    assert steps(waiting["fieldConfig"]["defaults"]["thresholds"])[-1] == latency
    assert {q: s[-1] for q, s in own_thresholds(waiting).items()} == own("CeleryQueueLatencyHigh")

    assert red_step(dashboards, "celery-overview", "Failure ratio") == alerts["CeleryTaskFailureRateHigh"]["threshold"]
    # null: the visibility timeout the exporter reports, drawn at kombu's default.
    unacked = alerts["CeleryUnackedStuck"]["threshold"] or 3600
    assert red_step(dashboards, "celery-queues", "Oldest unacked message age") == unacked


def test_backlog_graph_draws_the_alert_threshold(dashboards: list[dict[str, Any]]) -> None:
    graph = panel(dashboards, "celery-queues", "Backlog per queue")
    defaults = graph["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    assert BACKLOG_ALERT_THRESHOLD in steps(defaults["thresholds"])
    # A queue with its own threshold gets its own line, named as its series (legend {{queue_name}}).
    assert own_thresholds(graph) == {q: [None, t] for q, t in BACKLOG.overrides.items()}
    for uid, title in (("celery-overview", "Backlog per queue"), ("celery-queues", "Backlog now")):
        bars = panel(dashboards, uid, title)
        assert steps(bars["fieldConfig"]["defaults"]["thresholds"])[-1] == BACKLOG_ALERT_THRESHOLD, title
        assert {q: s[-1] for q, s in own_thresholds(bars).items()} == dict(BACKLOG.overrides), title
    latency = panel(dashboards, "celery-queues", "Oldest waiting message age")
    assert steps(latency["fieldConfig"]["defaults"]["thresholds"])[-1] == OLDEST_WAIT_CRIT_S
    assert {q: s[-1] for q, s in own_thresholds(latency).items()} == dict(LATENCY.overrides)
    ratio = panel(dashboards, "celery-overview", "Failure ratio")
    assert steps(ratio["fieldConfig"]["defaults"]["thresholds"])[-1] == FAILURE_RATIO_CRIT


def alert_rules(name: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every generated rule of alert `name` in prometheus/rules/ (production/ and demo/)."""
    found = []
    for path in sorted((REPO / "prometheus" / "rules").rglob("*.y*ml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            found += [(path.relative_to(REPO), r) for r in group.get("rules", []) if r.get("alert") == name]
    return found


def test_backlog_threshold_matches_the_alert_rule(dashboards: list[dict[str, Any]]) -> None:
    """The default rule compares with the configured default; a queue's own rule (an override in
    alerting.yml, labelled with its queue) with its own threshold, which the dashboards use too."""
    rules = alert_rules("CeleryQueueBacklog")
    assert rules, "no CeleryQueueBacklog rule in prometheus/rules/: run `python -m prometheus.generate`"
    config = alerting.load()
    over = panel(dashboards, "celery-overview", "Queues over threshold")["targets"][0]["expr"]
    defaults = 0
    for path, rule in rules:
        numbers = [float(n) for n in re.findall(r">\s*([0-9.e+]+)", rule["expr"])]
        queue = rule.get("labels", {}).get("queue_name")
        if queue is None:
            defaults += 1
            assert numbers == [BACKLOG_ALERT_THRESHOLD], f"{path}: default rule {numbers} != {BACKLOG_ALERT_THRESHOLD}"
            continue
        own = config.params("CeleryQueueBacklog", "queue_name", queue)["threshold"]
        assert numbers == [own], f"{path}: the rule of queue {queue} compares with {numbers}, alerting.yml says {own}"
        if own != BACKLOG_ALERT_THRESHOLD:
            assert BACKLOG.overrides[queue] == own
            assert f'queue_name="{queue}"}} > {own}' in over, f"'Queues over threshold' ignores {queue}'s own threshold"
            assert f'queue_name!="{queue}"' in over
    assert defaults == len({path for path, _ in rules}), "one default rule per profile"


def test_dashboards_read_recording_rules_that_exist(dashboards: list[dict[str, Any]]) -> None:
    """Every `level:metric:operations` name a panel reads is a recording rule of the committed
    prometheus/rules/<profile>/celery-recording.yml (what Prometheus actually loads)."""
    for path in sorted((REPO / "prometheus" / "rules").glob("*/celery-recording.yml")):
        committed = {r["record"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}
        assert committed == RECORDING_RULES, f"{path} is stale: run `python -m prometheus.generate`"
    used = set()
    for model in dashboards:
        for p in panels(model):
            for t in p["targets"]:
                used |= set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", t["expr"]))
    assert used, "the dashboards read no recording rule"
    assert used <= RECORDING_RULES, f"not recorded: {sorted(used - RECORDING_RULES)}"


RAW_QUEUE_LENGTH = re.compile(r"(?<![:\w])celery_queue_length(?![:\w])")  # not inside a rule's name


def test_raw_metrics_only_where_no_recording_rule_fits(dashboards: list[dict[str, Any]]) -> None:
    """The alerting layer records the backlog per queue, the task event rates and the runtime
    quantiles: panels read those. Flower's raw counter is left for what the rules sum away (per
    worker) or cannot hold (the dashboard's time range)."""
    for model in dashboards:
        for p in panels(model):
            for t in p["targets"]:
                expr, where = t["expr"], f"{model['uid']} / {p['title']}"
                assert not re.search(r"(?<![:\w])celery_queue_length(?![:\w])", expr), (
                    f"{where}: use {Rec.QUEUE_LENGTH}"
                )
                assert "flower_task_runtime_seconds_bucket" not in expr, f"{where}: use the runtime rules"
                if "flower_events_total" in expr:
                    assert "$worker" in expr or "$__range" in expr, f"{where}: use the event rate rule"


def test_empty_ok_entries_name_real_panels() -> None:
    models = {d["uid"]: d for d in load_dashboards()}
    assert set(EMPTY_OK) == {module.UID for module in DASHBOARDS}
    for uid, empty_ok in EMPTY_OK.items():
        targets = {(p["title"], t["refId"]) for p in panels(models[uid]) for t in p["targets"]}
        for title, ref_id in empty_ok:
            assert any(t == title and (ref_id is None or r == ref_id) for t, r in targets), (
                f"{uid}: EMPTY_OK names no panel {title!r} {ref_id or ''}"
            )


def test_substitution() -> None:
    values = {**BUILTIN_VALUES, "queue_name": ".*", "worker": "(a|b)"}
    assert substitute('x{queue_name=~"$queue_name"}[$__rate_interval]', values) == 'x{queue_name=~".*"}[1m]'
    assert substitute('x{worker=~"${worker}"} [[worker]] ${worker:regex}', values) == 'x{worker=~"(a|b)"} (a|b) (a|b)'
    assert substitute("increase(x[$__range]) $__range_s", values) == "increase(x[1h]) 3600"
    with pytest.raises(KeyError, match="unknown variable"):
        substitute("x{task=~'$task'}", values)


def test_every_query_is_listed_and_substituted() -> None:
    queries = list(iter_queries())
    targets = sum(len(p["targets"]) for d in load_dashboards() for p in panels(d))
    assert len([q for q in queries if q.kind == "panel"]) == targets
    assert {q.dashboard_uid for q in queries if q.kind == "variable"} == EXPECTED_UIDS
    for q in queries:
        assert "$" not in q.expr and "[[" not in q.expr, q.where()
    # What a healthy stack may leave empty is marked, and nothing else.
    empty_ok = {(q.dashboard_uid, q.panel_title, q.ref_id) for q in queries if not q.expects_data}
    assert ("celery-overview", "Firing alerts", "A") in empty_ok
    assert ("celery-overview", "Total backlog", "A") not in empty_ok


def test_every_query_parses_in_a_real_prometheus(tmp_path: Path) -> None:
    """A parse error is HTTP 400 bad_data: run each query once against an empty Prometheus."""
    queries = list(iter_queries())
    with running_prometheus(tmp_path) as url:
        errors = []
        for q in queries:
            try:
                run_query(url, q.expr)
            except QueryError as exc:
                errors.append(f"{q.where()}: {exc}\n    {q.expr}")
        # The check itself can fail: a broken query is refused.
        with pytest.raises(QueryError, match="bad_data"):
            run_query(url, 'sum(celery_queue_length{queue_name=~".*"}')
    assert not errors, "\n".join(errors)


def test_committed_json_is_plain_grafana_json() -> None:
    for path in DASHBOARDS_DIR.glob("*.json"):
        model = json.loads(path.read_text())
        assert model["schemaVersion"] >= 41, f"{path.name}: not a Grafana 12 dashboard"
        assert "id" not in model, f"{path.name}: a fixed database id would clash on import"
