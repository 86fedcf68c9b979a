"""Every dashboard query returns data from a real Prometheus holding metrics shaped like the
exporter's and Flower's (synthetic, backfilled), the alerting layer's recording rules evaluated
over them (the committed prometheus/rules/production/celery-recording.yml, backfilled with
promtool) and a real alert firing: wrong metric, rule or label names, bad vector matching or a
query that cannot show anything fail here, before the end-to-end stack test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from grafana.alerting_layer import BACKLOG
from tests.grafana import synthetic
from tests.grafana.prom import backfill, backfill_rules, running_prometheus
from tests.grafana.queries import EmptyWhen, check_live, iter_queries, run_query
from tests.support.procs import REPO, wait_until

RECORDING_RULES = REPO / "prometheus" / "rules" / "production" / "celery-recording.yml"

WINDOW_S = 20 * 60


@pytest.fixture(scope="module")
def prometheus_with_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float, float]]:
    """(base URL, first sample time, last sample time)."""
    work = tmp_path_factory.mktemp("prometheus-synthetic")
    end = float(int(time.time()))
    start = end - WINDOW_S
    backfill(synthetic.openmetrics(start, end), work / "tsdb", work)
    with running_prometheus(work / "raw", tsdb_dir=work / "tsdb") as raw_url:
        backfill_rules(RECORDING_RULES, raw_url, start, end, work / "recorded")
    for block in (work / "recorded").iterdir():
        if block.is_dir():
            block.rename(work / "tsdb" / block.name)
    with running_prometheus(work, rules=synthetic.BACKLOG_RULES, tsdb_dir=work / "tsdb") as url:
        yield url, start, end


def test_every_query_shows_data(prometheus_with_data: tuple[str, float, float]) -> None:
    url, start, end = prometheus_with_data
    # The scenario fails, retries, drains and sends task-sent events: all of it must show.
    situations = set(EmptyWhen) - {EmptyWhen.NO_ALERT}  # ALERTS exist only from the test's start on
    problems = check_live(url, start=start, end=end, expect_also=situations)
    assert not problems, "\n".join(problems)
    # Single values as a stat panel reads them (instant, at the last sample).
    problems = check_live(url, end=end, expect_also=situations)
    assert not problems, "\n".join(problems)


def test_alert_queries_show_the_firing_alert(prometheus_with_data: tuple[str, float, float]) -> None:
    url, _, _ = prometheus_with_data
    wait_until(lambda: run_query(url, 'ALERTS{alertstate="firing"}'), 20, "the synthetic backlog alert")
    alert_queries = [q for q in iter_queries() if q.empty_when is EmptyWhen.NO_ALERT]
    assert {q.kind for q in alert_queries} == {"panel", "annotation"}
    for q in alert_queries:
        result = run_query(url, q.expr)
        assert result, f"{q.where()}: no data\n    {q.expr}"
        assert {r["metric"].get("queue_name") for r in result} == {"default"}, q.where()
    table = next(q for q in alert_queries if q.panel_title == "Firing alerts" and q.kind == "panel")
    (row,) = run_query(url, table.expr)
    active_since_ms = float(row["value"][1])
    assert abs(active_since_ms / 1000 - time.time()) < 300, "'Active since' is a Unix time in ms"


def test_variables_list_the_expected_values(prometheus_with_data: tuple[str, float, float]) -> None:
    url, _, end = prometheus_with_data
    values = {}
    for q in iter_queries():
        if q.kind == "variable":
            values[q.dashboard_uid, q.panel_title] = {r["metric"][q.label] for r in run_query(url, q.expr, at=end)}
    for uid in ("celery-overview", "celery-queues", "celery-workers"):
        assert values[uid, "$broker"] == {synthetic.BROKER}, uid
    assert values["celery-overview", "$queue_name"] == set(synthetic.QUEUES)
    assert values["celery-queues", "$queue_name"] == set(synthetic.QUEUES)
    assert values["celery-workers", "$worker"] == set(synthetic.WORKERS), "producers are not workers"
    assert values["celery-workers", "$task"] == set(synthetic.TASKS)


def test_a_selected_value_narrows_the_queries(prometheus_with_data: tuple[str, float, float]) -> None:
    url, _, end = prometheus_with_data
    queries = {
        (q.dashboard_uid, q.panel_title): q for q in iter_queries(values={"queue_name": "demo"}) if q.ref_id == "A"
    }
    (backlog,) = run_query(url, queries["celery-overview", "Total backlog"].expr, at=end)
    assert float(backlog["value"][1]) == 50
    (without,) = run_query(url, queries["celery-overview", "Queues without consumers"].expr, at=end)
    assert float(without["value"][1]) == 1


def test_queues_over_threshold_counts_overridden_queues_against_their_own(
    prometheus_with_data: tuple[str, float, float],
) -> None:
    """As the alert does: `bulk` over the default threshold but under its own is not 'over'."""
    url, _, end = prometheus_with_data
    assert synthetic.BIG_QUEUE, "prometheus/alerting.yml overrides no queue with a higher backlog threshold (bulk)"
    queries = {(q.dashboard_uid, q.panel_title): q for q in iter_queries() if q.ref_id == "A"}
    (over,) = run_query(url, queries["celery-overview", "Queues over threshold"].expr, at=end)
    assert float(over["value"][1]) == 1, "only `default` is over its threshold"
    backlog = {
        r["metric"]["queue_name"]: float(r["value"][1])
        for r in run_query(url, queries["celery-overview", "Backlog per queue"].expr, at=end)
    }
    assert backlog[synthetic.BIG_QUEUE] == synthetic.BIG_QUEUE_BACKLOG > BACKLOG.default


def test_worker_up_tells_a_killed_worker_from_flower_online(prometheus_with_data: tuple[str, float, float]) -> None:
    url, _, end = prometheus_with_data
    queries = {(q.dashboard_uid, q.panel_title): q for q in iter_queries() if q.ref_id == "A"}

    def by_worker(panel: tuple[str, str]) -> dict[str, str]:
        return {r["metric"]["worker"]: r["value"][1] for r in run_query(url, queries[panel].expr, at=end)}

    up = by_worker(("celery-workers", "Worker up (exporter)"))
    assert up == {w: "0" if w == synthetic.KILLED_WORKER else "1" for w in synthetic.WORKERS}
    online = by_worker(("celery-workers", "Worker online (Flower)"))
    assert online == dict.fromkeys(synthetic.WORKERS, "1"), "Flower never saw the kill"


def test_the_check_reports_empty_panels(prometheus_with_data: tuple[str, float, float]) -> None:
    """check_live is what the stack test relies on: it must flag a panel with no data."""
    url, _, end = prometheus_with_data
    problems = check_live(url, start=end + 3600, end=end + 7200)  # after every sample: nothing there
    assert any("Total backlog" in p and "no data" in p for p in problems)
    assert not any("Firing alerts" in p for p in problems), "an allowed-empty panel was flagged"


def test_exporter_blind_spot_panels_show_what_the_exporter_reports(
    prometheus_with_data: tuple[str, float, float],
) -> None:
    """Queues not reported, the consumers reading's age and scrape errors by reason: the values
    the exporter exposes, not just some data."""
    url, _, end = prometheus_with_data
    queries = {(q.panel_title, q.ref_id): q for q in iter_queries() if q.dashboard_uid == "celery-overview"}

    def values(panel: str, ref_id: str = "A") -> dict[str, float]:
        result = run_query(url, queries[panel, ref_id].expr, at=end)
        return {r["metric"].get("reason", ""): float(r["value"][1]) for r in result}

    assert values("Queues not reported") == {"": synthetic.QUEUES_DROPPED}
    (age,) = values("Consumers reading age").values()
    assert 0 <= age < synthetic.CONSUMERS_INTERVAL_S
    errors = values("Exporter scrape errors")
    assert set(errors) == set(synthetic.ERROR_RATES)
    for reason, rate in synthetic.ERROR_RATES.items():
        assert errors[reason] == pytest.approx(rate, rel=0.05), reason
    assert values("Exporter scrape errors", "B") == {"": synthetic.UNACKED_UNATTRIBUTED}
