"""One source per fact: what docker-compose.yml, the Dockerfiles, the READMEs and alerting.yml
write again (they cannot import Python) is compared here with its source, and fails on drift.

- components (commands, ports): native/components.py
- the queues the demo worker consumes: workers.routing (the worker reads them from the app)
- Prometheus job names: prometheus/prometheus.yml
- the beat period: workers/config.py"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from native import components, settings
from native.components import DEFAULT_PORTS, Component, Layout
from prometheus import generate
from prometheus.generate import promql
from tests.support.procs import REPO, Proc, wait_until
from tests.support.stack import LocalStack, StackRedis
from workers import routing
from workers.app import create_app
from workers.config import Settings

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
PROMETHEUS_YML = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
# Where compose differs on purpose: its Redis is redis/start.sh with redis/redis.conf (ACL users,
# append-only file; tests/faults starts it so), the native one a throwaway server.
NOT_IN_COMPOSE_FORM = {"redis"}


def table() -> dict[str, Component]:
    return components.table(Layout(run_dir=Path("/run-dir"), broker_url="redis://127.0.0.1:6379/0"))


def split(argv: list[str] | tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Positional words and {flag: value} of a command line (`--x=v`, `--x v`, `-E`)."""
    words, flags = [], {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and "=" in word:
            flag, value = word.split("=", 1)
            flags[flag] = value
        elif word.startswith("-"):
            takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("-") and word not in ("-E",)
            flags[word] = argv[i + 1] if takes_value else ""
            i += takes_value
        else:
            words.append(word)
        i += 1
    return words, flags


def command_form(argv: list[str] | tuple[str, ...], deployment: frozenset[str]) -> tuple[list[str], dict[str, str]]:
    """What must be the same everywhere: the program's name, its words, every flag but those
    whose values depend on the deployment (addresses, ports, paths, names)."""
    words, flags = split(argv)
    if words and "/" in words[0]:
        words[0] = words[0].rsplit("/", 1)[1]
    return words, {f: v for f, v in flags.items() if f not in deployment}


def compose_argv(service: str) -> list[str]:
    """The service's command as compose runs it: entrypoint (image or Dockerfile) plus command."""
    svc = COMPOSE[service]
    entry = {
        "prometheus": ["prometheus"],  # the official images' entrypoints
        "alertmanager": ["prometheus-alertmanager"],
        "exporter": dockerfile_instruction(REPO / "exporter" / "Dockerfile", "ENTRYPOINT"),
    }.get(service, [])
    command = svc.get("command")
    if command is None and "build" in svc:
        command = dockerfile_instruction(REPO / svc["build"]["dockerfile"], "CMD", required=False)
    return [*entry, *(command or [])]


def dockerfile_instruction(path: Path, name: str, required: bool = True) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith(name + " "):
            return json.loads(line[len(name) + 1 :])
    assert not required, f"{path} has no {name}"
    return []


@pytest.mark.parametrize("name", [n for n in table() if n not in NOT_IN_COMPOSE_FORM])
def test_compose_runs_each_component_as_the_table_does(name: str) -> None:
    c = table()[name]
    ours = command_form(c.argv, c.deployment_flags)
    theirs = command_form(compose_argv(c.kind), c.deployment_flags)
    if c.kind == "receiver":  # compose runs the module with the interpreter of its image
        ours = (["python", *ours[0][1:]], ours[1])
    assert theirs == ours, f"docker-compose.yml's {c.kind} runs {theirs}, native/components.py {ours}"


def test_the_test_stack_runs_the_compose_workers_pool(tmp_path: Path) -> None:
    """The at-least-once behaviour tests/faults measure is that of the pool users run."""
    pool_flags = ("--pool", "-P")
    _, ours = split(components.worker(LocalStack(tmp_path).layout, "worker").argv)
    _, theirs = split(compose_argv("worker"))
    assert {f: ours.get(f) for f in pool_flags} == {f: theirs.get(f) for f in pool_flags}


def test_the_worker_image_runs_the_compose_worker() -> None:
    image = dockerfile_instruction(REPO / "workers" / "Dockerfile", "CMD")
    assert image == COMPOSE["worker"]["command"], "workers/Dockerfile's CMD and compose's worker differ"


def compose_port(service: str) -> tuple[str, int, int]:
    """(variable, its default, container port) of the service's one published port."""
    (published,) = COMPOSE[service]["ports"]
    match = re.fullmatch(r"127\.0\.0\.1:\$\{(\w+):-(\d+)\}:(\d+)", published)
    assert match, f"{service}: {published} is not 127.0.0.1:${{X_PORT:-default}}:port"
    return match.group(1), int(match.group(2)), int(match.group(3))


@pytest.mark.parametrize("kind", sorted(DEFAULT_PORTS))
def test_compose_and_the_native_runner_use_the_same_ports(kind: str) -> None:
    variable, default, container = compose_port(kind)
    assert default == container == DEFAULT_PORTS[kind], f"{kind}: compose {default}:{container}, table {DEFAULT_PORTS}"
    assert variable == f"{kind.upper()}_PORT"
    if kind != "redis":
        assert getattr(settings.load({}), f"{kind}_port") == DEFAULT_PORTS[kind]
        assert f"`{variable}` | {DEFAULT_PORTS[kind]} |" in (REPO / "native" / "README.md").read_text()


def test_compose_containers_listen_where_their_targets_say() -> None:
    listens = {
        "flower": split(COMPOSE["flower"]["command"])[1]["--port"],
        "exporter": COMPOSE["exporter"]["environment"]["CELERY_EXPORTER_PORT"],
        "receiver": COMPOSE["receiver"]["environment"]["RECEIVER_PORT"],
        # the images' defaults: compose sets no --web.listen-address
        "prometheus": "9090" if "--web.listen-address" not in split(compose_argv("prometheus"))[1] else "?",
        "alertmanager": "9093" if "--web.listen-address" not in split(compose_argv("alertmanager"))[1] else "?",
    }
    assert {k: int(v) for k, v in listens.items() if v != "?"} == {k: DEFAULT_PORTS[k] for k in listens}
    comps = table()
    kind_at = {c.port: c.kind for c in comps.values() if c.port}  # the table's default ports
    for path, groups in components.target_groups(PROMETHEUS_YML, comps).items():
        # compose: the service name, its container port; the same `broker` labels
        want = [
            {**g, "targets": [f"{kind_at[int(a.rsplit(':', 1)[1])]}:{a.rsplit(':', 1)[1]}" for a in g["targets"]]}
            for g in groups
        ]
        written = yaml.safe_load((REPO / "prometheus" / "targets" / "compose" / Path(path).name).read_text())
        assert written == want, f"prometheus/targets/compose/{Path(path).name}"
    receiver_url = (REPO / "alertmanager" / "compose" / "local-receiver-url").read_text().strip()
    assert receiver_url == f"http://receiver:{DEFAULT_PORTS['receiver']}/"


def test_prometheus_yml_scrapes_exactly_the_jobs_of_the_table() -> None:
    files = components.target_files(PROMETHEUS_YML, table())  # raises on a job either side lacks
    assert files
    broken = {**PROMETHEUS_YML, "scrape_configs": [*PROMETHEUS_YML["scrape_configs"], {"job_name": "nobody"}]}
    with pytest.raises(ValueError, match="nobody"):
        components.target_files(broken, table())


def test_alerting_yml_names_the_jobs_prometheus_yml_scrapes() -> None:
    jobs = generate.load().jobs
    by_kind = {c.kind: c.job for c in table().values()}
    assert dict(jobs) == {"exporter": by_kind["exporter"], "flower": by_kind["flower"]}
    scraped = {s["job_name"] for s in PROMETHEUS_YML["scrape_configs"]}
    assert set(jobs.values()) <= scraped


def test_the_beat_alert_knows_the_beat_period() -> None:
    tasks = generate.load().params("CeleryBeatMissing")["tasks"]
    schedule = create_app(Settings.from_env({})).conf.beat_schedule
    periods = {entry["task"]: float(entry["schedule"]) for entry in schedule.values()}
    assert {task: promql.seconds(d) for task, d in tasks.items()} == periods, (
        "prometheus/alerting.yml's CeleryBeatMissing.tasks and workers/config.py's beat_schedule differ"
    )


def test_no_file_lists_the_worker_queues() -> None:
    """The worker consumes every queue of the app (no -Q): compose, the image, the README and the
    table leave it to workers.routing."""
    queue_names = [q.name for q in routing.TASK_QUEUES]
    places = {
        "docker-compose.yml": (REPO / "docker-compose.yml").read_text(),
        "workers/Dockerfile": (REPO / "workers" / "Dockerfile").read_text(),
        "native/components.py": " ".join(table()["worker"].argv),
    }
    for where, text in places.items():
        assert "-Q" not in text.split() and '"-Q"' not in text, f"{where} lists the worker's queues"
    readme = (REPO / "workers" / "README.md").read_text()
    run_lines = [line for line in readme.splitlines() if line.startswith("celery -A workers.app worker")]
    assert run_lines and all("-Q" not in shlex.split(line) for line in run_lines)
    table_rows = re.findall(r"^\| `(\w+)` \| `\w+` \((?:direct|topic|fanout)\)", readme, re.MULTILINE)
    assert table_rows == queue_names, "workers/README.md's routing table and workers.routing differ"


def test_the_table_worker_consumes_the_app_queues(tmp_path: Path) -> None:
    server = StackRedis(tmp_path).start()
    try:
        lay = Layout(run_dir=tmp_path, broker_url=server.url, worker_name="facts@%h", worker_concurrency=1)
        c = components.table(lay)["worker"]
        proc = Proc("worker", c.argv, tmp_path / "logs", env=dict(c.env), cwd=c.cwd)
        try:
            app = create_app(Settings(broker_url=server.url, result_backend=server.url))
            replies: Any = wait_until(lambda: app.control.inspect(timeout=1).active_queues(), 30, "the worker")
            (queues,) = replies.values()
            assert ",".join(sorted(q["name"] for q in queues)) == ",".join(sorted(routing.WORKER_QUEUES.split(",")))
            app.close()
        finally:
            proc.stop()
    finally:
        server.stop()
