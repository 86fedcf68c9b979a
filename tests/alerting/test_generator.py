"""prometheus/alerting.yml -> prometheus/rules/<profile>/: fresh, complete, and every alert tested."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus import generate
from prometheus.generate import promql
from tests.support.procs import REPO, tool

RULES = REPO / "prometheus" / "rules"
RUNBOOKS = REPO / "docs" / "runbooks.md"
DASHBOARDS = {"celery-overview", "celery-queues", "celery-workers"}


def source() -> dict[str, Any]:
    return yaml.safe_load(generate.DEFAULT_PATH.read_text())


def alert_rules(profile: str = "production") -> list[dict[str, Any]]:
    doc = yaml.safe_load((RULES / profile / "celery-alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_the_committed_rules_are_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prometheus.generate", "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_check_names_the_stale_files_when_the_yaml_changed() -> None:
    doc = source()
    doc["alerts"]["CeleryQueueBacklog"]["threshold"] = 2000
    stale = {p.relative_to(RULES).as_posix() for p in generate.stale_files(generate.parse(doc))}
    assert stale == {"production/celery-alerts.yml", "demo/celery-alerts.yml"}


def test_every_alert_of_the_catalog_is_generated_with_labels_and_annotations() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == {a.name for a in generate.ALERTS}
    for rule in rules:
        spec = generate.BY_NAME[rule["alert"]]
        assert rule["labels"]["severity"] == spec.severity in ("critical", "warning")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert "{{" not in rule["annotations"]["summary"], "summaries are static"
        if spec.scope is not generate.Scope.BEAT:  # CeleryBeatMissing names its task in the text
            assert "{{ $" in rule["annotations"]["description"], rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        uid = re.search(r"/d/([^?{]+)", rule["annotations"]["dashboard_url"]).group(1)
        assert uid in DASHBOARDS


def test_every_runbook_url_points_at_a_heading_of_the_runbooks() -> None:
    headings = {line[3:].strip().lower() for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    for spec in generate.ALERTS:
        assert spec.anchor in headings, f"docs/runbooks.md has no '## {spec.name}'"


def test_the_production_backlog_contract() -> None:
    default = next(r for r in alert_rules() if r["alert"] == "CeleryQueueBacklog" and "queue_name" not in r["labels"])
    assert default["for"] == "5m"
    assert default["labels"] == {"severity": "warning"}
    assert re.fullmatch(r"queue_name:celery_queue_length:last_known(\{[^}]*\})? > 1000", default["expr"])


def test_a_per_queue_override_gets_its_own_rule_thresholds_and_for() -> None:
    bulk = [r for r in alert_rules() if r["labels"].get("queue_name") == "bulk"]
    by_alert = {r["alert"]: r for r in bulk}
    assert by_alert["CeleryQueueBacklog"]["expr"].endswith('{queue_name="bulk"} > 50000')
    assert by_alert["CeleryQueueLatencyHigh"]["for"] == "10m"
    assert "> 500000" in by_alert["CeleryQueueBacklogCritical"]["expr"]
    # the default rules leave the bulk queue out
    defaults = [r for r in alert_rules() if r["alert"] == "CeleryQueueBacklog" and r not in bulk]
    assert all('queue_name!="bulk"' in r["expr"] for r in defaults)


def test_links_are_parameters() -> None:
    doc = source()
    doc["links"] = {
        "runbook_base_url": "https://git.example/ops/blob/main/docs/runbooks.md",
        "grafana_base_url": "https://g.example/",
    }
    files = generate.render(generate.parse(doc), generate.profile(generate.parse(doc), "production"))
    text = files["celery-alerts.yml"]
    assert "runbook_url: https://git.example/ops/blob/main/docs/runbooks.md#celeryworkerdown" in text
    assert "dashboard_url: https://g.example/d/celery-overview" in text


def test_the_demo_profile_changes_only_durations() -> None:
    prod, demo = alert_rules("production"), alert_rules("demo")
    assert [{k: v for k, v in r.items() if k != "for"} for r in prod] == [
        {k: v for k, v in r.items() if k != "for"} for r in demo
    ]
    assert all(promql.seconds(d["for"]) <= promql.seconds(p["for"]) for d, p in zip(demo, prod, strict=True))


def test_uniform_profile_for_the_end_to_end_stacks(tmp_path: Path) -> None:
    generate.write_profile(generate.load(), generate.uniform("5s"), tmp_path)
    doc = yaml.safe_load((tmp_path / "celery-alerts.yml").read_text())
    assert {r["for"] for g in doc["groups"] for r in g["rules"] if "alert" in r} == {"5s"}
    result = subprocess.run(
        [tool("promtool"), "check", "rules", *map(str, tmp_path.glob("*.yml"))], capture_output=True
    )
    assert result.returncode == 0, result.stdout


def promtool_cases() -> dict[str, dict[str, int]]:
    """alert name -> how many promtool alert_rule_test cases expect it to fire / stay quiet."""
    counts: dict[str, dict[str, int]] = {}
    for path in (REPO / "prometheus" / "tests").glob("*.test.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "quiet"
                counts.setdefault(case["alertname"], {"fires": 0, "quiet": 0})[kind] += 1
    return counts


@pytest.mark.parametrize("alert", [a.name for a in generate.ALERTS])
def test_every_alert_has_a_firing_and_a_quiet_promtool_case(alert: str) -> None:
    cases = promtool_cases().get(alert, {"fires": 0, "quiet": 0})
    assert cases["fires"] >= 1 and cases["quiet"] >= 1, f"{alert}: {cases}"


BAD_CONFIGS = [
    (lambda d: d["alerts"].pop("CeleryBrokerDown"), "missing alert(s) CeleryBrokerDown"),
    (lambda d: d["alerts"].update(CeleryNope={"for": "1m"}), "unknown alert(s) CeleryNope"),
    (lambda d: d["alerts"]["CeleryQueueBacklog"].update({"for": "5 minutes"}), "alerts.CeleryQueueBacklog.for"),
    (lambda d: d["alerts"]["CeleryQueueBacklog"].update(threshold=-1), "is not a number >= 0"),
    (lambda d: d["alerts"]["CeleryQueueBacklog"].update(treshold=5), "unknown parameter(s) treshold"),
    (lambda d: d["alerts"]["CeleryTaskFailureRateHigh"].update(threshold=10), "is not a ratio"),
    (lambda d: d["overrides"]["queue_name"]["bulk"].update(CeleryWorkerDown={"for": "1m"}), "can be overridden"),
    (lambda d: d["overrides"].update(worker={}), "overrides are keyed by"),
    (lambda d: d["profiles"]["demo"].update(CeleryQueueBacklog="soon"), "profiles.demo.CeleryQueueBacklog"),
    (lambda d: d.update(blind_hold="1m"), "blind_hold 1m must exceed"),
    (lambda d: d.update(colour="red"), "unknown key(s) colour"),
    (
        lambda d: d["alerts"]["CeleryExporterConsumersStale"].update(required="yes"),
        "alerts.CeleryExporterConsumersStale.required: 'yes' is not true or false",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_config_mistakes_are_one_clear_message(mutate: Any, message: str) -> None:
    doc = source()
    mutate(doc)
    with pytest.raises(generate.ConfigError, match=re.escape(message)):
        generate.parse(doc)


def test_the_cli_reports_a_bad_file_in_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "alerting.yml"
    bad.write_text("alerts: [1, 2]\n")
    result = subprocess.run(
        [sys.executable, "-m", "prometheus.generate", "--check", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
