"""One exporter, several brokers: /probe?target=NAME for the targets of the config file, with real
redis-servers. Each target's numbers are its own broker's; a broker that is down costs only its own
target; a malformed or unknown name is refused (400) before any broker is touched; bad `targets:`
are one line and exit code 2 at start-up."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from celery_queue_exporter.config import TARGET_NAME, ConfigError, load_config
from celery_queue_exporter.probe import target_name
from celery_queue_exporter.server import BadRequest
from tests.support.exporter import Samples, parse, run_cli
from tests.support.procs import REPO, Proc, RedisServer, free_port, tool, wait_until

EXAMPLE_ADDRESS = "celery-exporter.internal:9818"  # the exporter's address in prometheus/examples/probe-job.yml


def get(url: str) -> tuple[int, str]:
    """(status, body), 4xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def probe(port: int, name: str) -> Samples:
    status, body = get(f"http://127.0.0.1:{port}/probe?target={name}")
    assert status == 200, body
    return parse(body)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two redis-servers: the brokers of two Celery apps, `payments` and `orders`."""
    servers = [RedisServer(tmp_path / name).start() for name in ("payments", "orders")]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exporter.yml"
    path.write_text(text)
    return str(path)


def test_one_exporter_probes_two_brokers_apart_and_a_down_one_costs_only_itself(
    tmp_path, brokers, start_exporter, celery_producer
):
    payments, orders = brokers
    for _ in range(3):
        celery_producer(payments.url).send_task("tests.noop", queue="default")
    # orders' app uses a key prefix: a layout option of its target only
    orders_app = celery_producer(orders.url, {"global_keyprefix": "orders:"})
    for _ in range(5):
        orders_app.send_task("tests.noop", queue="default")
    orders_app.send_task("tests.noop", queue="emails", priority=9)
    down_port = free_port()  # nothing listens there
    config = write_config(
        tmp_path,
        f"""
targets:
  payments: {{broker_url: "{payments.url}", consumers_interval: 0}}
  orders:
    broker_url: {orders.url}
    global_keyprefix: "orders:"
    consumers_interval: 0
  down:
    broker_url: redis://127.0.0.1:{down_port}/0
    queues: [default]
    redis_timeout: 1
    consumers_interval: 0.3
    consumers_timeout: 0.3
""",
    )
    exporter = start_exporter("--config", config, "--broker-url", payments.url)

    of_payments = probe(exporter.port, "payments")
    assert value(of_payments, "celery_broker_up") == 1
    assert value(of_payments, "celery_queue_length", queue_name="default") == 3
    assert value(of_payments, "celery_queue_length", queue_name="emails") is None
    of_orders = probe(exporter.port, "orders")
    assert value(of_orders, "celery_broker_up") == 1
    assert value(of_orders, "celery_queue_length", queue_name="default") == 5
    assert value(of_orders, "celery_queue_priority_length", queue_name="emails", priority="9") == 1
    text = get(f"http://127.0.0.1:{exporter.port}/probe?target=orders")[1]
    lint = subprocess.run([tool("promtool"), "check", "metrics"], input=text, text=True, capture_output=True, timeout=9)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # a probe holds its broker's families only: the process' own are on /metrics, once
    for samples in (of_payments, of_orders):
        assert not [key for key in samples if key[0].startswith(("process_", "celery_exporter_build_info"))]

    def down_target() -> Samples | None:
        samples = probe(exporter.port, "down")
        return (
            samples
            if (value(samples, "celery_exporter_consumers_reading_errors_total", reason="failed") or 0)
            else None
        )

    of_down = wait_until(down_target, 15, "the down target's failed consumers reading")
    assert value(of_down, "celery_broker_up") == 0
    assert value(of_down, "celery_exporter_scrape_errors_total", reason="redis") >= 1
    assert value(of_down, "celery_exporter_consumers_reading_enabled") == 1
    assert value(of_down, "celery_queue_length", queue_name="default") is None
    # ...and the others are unaffected
    assert value(probe(exporter.port, "payments"), "celery_queue_length", queue_name="default") == 3
    assert value(probe(exporter.port, "orders"), "celery_queue_length", queue_name="default") == 5

    # /metrics serves the default broker exactly as an exporter without targets does
    plain = start_exporter("--broker-url", payments.url)
    with_targets, without = exporter.scrape(), plain.scrape()
    assert set(with_targets) == set(without)
    assert value(with_targets, "celery_queue_length", queue_name="default") == 3
    assert value(with_targets, "celery_exporter_build_info", version=_version()) == 1
    assert "payments, orders, down" in exporter.proc.log()


def _version() -> str:
    from celery_queue_exporter import __version__

    return __version__


def connections_and_commands(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """Connections the server accepted and commands it ran (INFO aside: that is us asking)."""
    received = client.info("stats")["total_connections_received"]
    calls = {name: stat["calls"] for name, stat in client.info("commandstats").items() if name != "cmdstat_info"}
    return received, calls


def test_malformed_or_unknown_target_names_are_refused_without_touching_a_broker(tmp_path, brokers, start_exporter):
    payments, orders = brokers
    config = write_config(
        tmp_path,
        f"""
broker_url: ""   # no default broker: /metrics has the process' own metrics only
targets:
  payments: {{broker_url: "{payments.url}", consumers_interval: 0}}
  orders: {{broker_url: "{orders.url}", consumers_interval: 0}}
""",
    )
    exporter = start_exporter("--config", config)
    metrics = exporter.text()
    assert "celery_exporter_build_info{" in metrics and "process_cpu_seconds_total" in metrics
    assert "celery_broker_up" not in metrics

    watchers = [server.client() for server in brokers]
    before = [connections_and_commands(client) for client in watchers]
    secret_url = f"redis%3A%2F%2Fadmin%3As3cret%40127.0.0.1%3A{payments.port}%2F0"
    queries = [
        "target=nope",  # well formed, not configured
        "target=PAYMENTS",  # names are case-sensitive
        f"target={secret_url}",
        f"target=127.0.0.1:{payments.port}",
        "target=",
        "",
        "target",
        "target=payments&target=orders",
        f"target=payments&broker_url={secret_url}",
        "target=pay%0Aments",
        "target=..%2Fpayments",
        "target=payments%00",
        "target=" + "a" * 64,
        "target=payments&" + "x" * 600,
    ]
    for query in queries:
        status, body = get(f"http://127.0.0.1:{exporter.port}/probe?{query}")
        assert status == 400, (query, status, body)
        assert len(body.strip().splitlines()) == 1 and "s3cret" not in body, (query, body)
    assert "unknown target 'nope'" in get(f"http://127.0.0.1:{exporter.port}/probe?target=nope")[1]
    assert "malformed target name" in get(f"http://127.0.0.1:{exporter.port}/probe?target={secret_url}")[1]
    assert [connections_and_commands(client) for client in watchers] == before
    assert "s3cret" not in exporter.proc.log()

    # the same watch sees a real probe: payments' server is reached, orders' is not
    assert value(probe(exporter.port, "payments"), "celery_broker_up") == 1
    after = [connections_and_commands(client) for client in watchers]
    assert after[0][0] > before[0][0] and after[0][1] != before[0][1]
    assert after[1] == before[1]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "targets:\n  payments: {broker_url: 'redis://127.0.0.1:1/0'}\n  payments: {broker_url: 'redis://127.0.0.1:2/0'}\n",
            "line 3: target 'payments' is defined twice (first at line 2)",
        ),
        ("targets:\n  'pay ments': {broker_url: 'redis://127.0.0.1:1/0'}\n", "target name 'pay ments' is malformed"),
        ("targets:\n  payments: {queues: [default]}\n", "target 'payments' has no broker_url"),
        ("targets:\n", "targets: is empty"),
        ("targets: {}\n", "targets: is empty"),
    ],
)
def test_bad_targets_are_one_line_and_exit_2(tmp_path, config, message):
    result = run_cli("--config", write_config(tmp_path, config))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("celery-queue-exporter: error:"), result.stderr
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("targets: [payments]\n", "must map target names"),
        ("targets:\n  payments: redis://127.0.0.1:1/0\n", "target 'payments' must be a mapping"),
        ("targets:\n  payments: {broker_url: ''}\n", "has no broker_url"),
        ("targets:\n  -payments: {broker_url: 'redis://h/0'}\n", "target name '-payments' is malformed"),
        ("targets:\n  p: {broker_url: 'redis://h/0', port: 9000}\n", "'port' is an option of the whole exporter"),
        ("targets:\n  p: {broker_url: 'redis://h/0', colour: blue}\n", "target 'p': unknown option 'colour'"),
        ("targets:\n  p: {broker_url: 'redis://h/0', max_queues: -1}\n", "targets.p.max_queues"),
        ("port: 1\nport: 2\n", "line 2: key 'port' appears twice"),
        ("max_queues: 1\nmax-queues: 2\n", "line 2: key 'max-queues' appears twice"),
        ("targets:\n  p: {broker_url: 'redis://h/0', sep: ':', sep: '|'}\n", "key 'sep' appears twice"),
    ],
)
def test_bad_targets_are_config_errors(tmp_path, config, message):
    with pytest.raises(ConfigError, match=r"^(config file|invalid value)") as info:
        load_config(["--config", write_config(tmp_path, config)], environ={})
    assert message in str(info.value)


def test_a_target_takes_its_own_options_over_the_defaults(tmp_path):
    path = write_config(
        tmp_path,
        """
port: 9100
redis_timeout: 9
targets:
  payments: &common {broker_url: "redis://:pw@a:6379/0", consumers_interval: 0, priority_steps: [0, 5]}
  orders:
    <<: *common
    broker_url: redis://b:6379/1
    queues: [default]
""",
    )
    config = load_config(["--config", path, "--broker-url", "redis://c/0"], environ={})
    assert config.broker_url == "redis://c/0" and list(config.targets) == ["payments", "orders"]
    payments, orders = config.targets["payments"], config.targets["orders"]
    assert payments.priority_steps == (0, 5) and orders.priority_steps == (0, 5)  # YAML merge keys share options
    assert orders.broker_url == "redis://b:6379/1" and orders.queues == ("default",)
    assert payments.redis_timeout == 3.0  # top-level options and flags are the default target's, not theirs
    assert payments.port == 9100  # ...but the process options are shared
    assert payments.sources["priority_steps"] == "config file key targets.payments.priority_steps"


def test_an_unsupported_target_url_names_its_target(tmp_path):
    result = run_cli("--config", write_config(tmp_path, "targets:\n  mq: {broker_url: 'ftp://u:s3cret@h/'}\n"))
    assert result.returncode == 2 and "target 'mq'" in result.stderr and "s3cret" not in result.stderr, result


@pytest.mark.parametrize(
    ("query", "name"),
    [("target=payments", "payments"), ("target=a.b-c_9", "a.b-c_9"), ("target=" + "a" * 63, "a" * 63)],
)
def test_target_name_accepts_plain_names(query, name):
    assert target_name(query) == name


@pytest.mark.parametrize(
    "query",
    ["", "target", "target=", "target=a&target=a", "x=1", "target=a&x=1", "target=a b", "target=_a", "target=a%2Fb"],
)
def test_target_name_refuses_the_rest(query):
    with pytest.raises(BadRequest):
        target_name(query)


def test_prometheus_scrapes_the_example_probe_job_with_a_broker_label_per_target(
    tmp_path, brokers, start_exporter, celery_producer
):
    """prometheus/examples/probe-job.yml, as shipped but for the exporter's address, run by a real
    Prometheus: one series per broker and queue, labelled with the broker; the process' own once."""
    payments, orders = brokers
    for server, count in ((payments, 3), (orders, 5)):
        app = celery_producer(server.url)
        for _ in range(count):
            app.send_task("tests.noop", queue="default")
    config = write_config(
        tmp_path,
        f'broker_url: ""\ntargets:\n  payments: {{broker_url: "{payments.url}", consumers_interval: 0}}\n'
        f'  orders: {{broker_url: "{orders.url}", consumers_interval: 0}}\n',
    )
    exporter = start_exporter("--config", config)
    address = f"127.0.0.1:{exporter.port}"
    job = yaml.safe_load((REPO / "prometheus/examples/probe-job.yml").read_text().replace(EXAMPLE_ADDRESS, address))
    job["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(job))
    port = free_port()
    prometheus = Proc(
        "prometheus-probe",
        [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path,
    )  # fmt: skip
    try:

        def query(expr: str) -> dict[tuple[tuple[str, str], ...], str]:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5
            ) as resp:
                result = json.load(resp)["data"]["result"]
            return {tuple(sorted(r["metric"].items())): r["value"][1] for r in result}

        def scraped_all() -> bool:  # both probe targets and the process job, each scraped once at least
            return len(query('celery_queue_length{queue_name="default"}')) == 2 and len(query("up")) == 3

        wait_until(scraped_all, 30, "Prometheus scraping both targets through the probe job, and the exporter")
        found = query('celery_queue_length{queue_name="default"}')
        common = {"job": "celery-queue-exporter", "instance": address, "queue_name": "default"}
        assert found == {
            tuple(sorted({**common, "__name__": "celery_queue_length", "broker": broker}.items())): value
            for broker, value in (("payments", "3"), ("orders", "5"))
        }, found
        up = query("up")
        assert sorted((dict(labels)["job"], dict(labels).get("broker"), v) for labels, v in up.items()) == [
            ("celery-queue-exporter", "orders", "1"),
            ("celery-queue-exporter", "payments", "1"),
            ("celery-queue-exporter-process", None, "1"),
        ]
        build = query("celery_exporter_build_info")
        assert [dict(labels)["job"] for labels in build] == ["celery-queue-exporter-process"]
        assert all("broker" not in dict(labels) for labels in build)
    finally:
        prometheus.stop()


def readme_yaml_after(heading: str, nth: int = 0) -> str:
    """The nth ```yaml block of exporter/README.md after `heading`."""
    text = (REPO / "exporter/README.md").read_text()
    return text[text.index(heading) :].split("```yaml\n")[nth + 1].split("```")[0]


def test_the_readme_examples_are_the_ones_shipped_and_tested(tmp_path):
    heading = "## Several brokers in one exporter"
    config = load_config(["--config", write_config(tmp_path, readme_yaml_after(heading))], environ={})
    assert config.broker_url == "" and list(config.targets) == ["payments", "orders"]
    assert config.targets["orders"].queues == ("default",) and config.targets["orders"].global_keyprefix == "orders:"
    shipped = yaml.safe_load((REPO / "prometheus/examples/probe-job.yml").read_text())
    assert yaml.safe_load(readme_yaml_after(heading, 1)) == shipped


def test_a_targets_app_gives_its_layout_defaults(tmp_path):
    """`app:` in a target loads that app's broker_transport_options for that target alone."""
    path = write_config(
        tmp_path, "targets:\n  payments: {broker_url: 'redis://a/0', app: 'proj.celery:app', sep: '|'}\n"
    )
    options = {"global_keyprefix": "pay:", "sep": ":", "visibility_timeout": 60}
    config = load_config(["--config", path], environ={}, transport_options=lambda ref: options)
    payments = config.targets["payments"]
    assert (payments.global_keyprefix, payments.sep, payments.visibility_timeout) == ("pay:", "|", 60)
    assert config.global_keyprefix == "" and config.app is None


def test_a_target_name_is_a_valid_broker_name_and_back():
    """The exporter (installable alone) spells the rule of prometheus/file_sd.py once more: kept equal."""
    from prometheus.file_sd import _NAME as BROKER_NAME

    assert BROKER_NAME.pattern == f"^{TARGET_NAME.pattern}$"
