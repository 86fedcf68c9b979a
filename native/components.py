"""The stack's components, defined once: command line, environment and readiness probe of each.

The native runner renders supervisord's configuration from this table (native/supervisord.py)
and the end-to-end tests start the same rows as child processes (native/child_stack.py).
docker-compose.yml cannot import it: tests/stack/test_facts.py fails when its commands drift.

A deployment differs only in its `Layout`: where it keeps its files, its ports and broker, and
the knobs the tests turn (a shorter exporter interval, a worker name, extra flags).

- A new component: a function `def thing(lay: Layout, name: str) -> Component` below, its kind
  in `KINDS` (start order), its port in `DEFAULT_PORTS` if it listens.
- Another instance of a component (two Prometheus servers): `Layout(instances={"prometheus":
  ("prometheus", "prometheus-b")}, ports={..., "prometheus-b": 9190})`. Each instance gets its
  own name (supervisord program, log file, folder `run_dir/<name>`), port and extra args.
  Highly available alerting (native/ha.py) is that: `instances=ha.INSTANCES`, the Alertmanagers'
  gossip ports in `alertmanager_cluster`; a Prometheus instance's replica label is its name's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from native import ha, health
from prometheus import file_sd

REPO = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO / ".tools" / "bin"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"

# Where each kind listens unless told otherwise (the native runner's defaults, and the ports the
# containers of docker-compose.yml listen on: checked by tests/stack/test_facts.py).
DEFAULT_PORTS = {
    "redis": 6379,
    "flower": 5555,
    "exporter": 9818,
    "prometheus": 9090,
    "alertmanager": 9093,
    "receiver": 9097,
}
# Start order. Prometheus last: its targets exist by then.
KINDS = ("redis", "worker", "beat", "flower", "exporter", "receiver", "alertmanager", "prometheus")
# On a RabbitMQ broker (these URL schemes) its row takes the place of redis: a broker the stack
# reuses and probes, never starts.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "pyamqps")


@dataclass(frozen=True)
class Component:
    name: str  # unique in the table: supervisord program, log file, run_dir/<name>
    kind: str  # what it is (KINDS): several instances share a kind
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]  # on top of the environment of whoever starts it
    probe: health.Probe | None  # None: running is all there is to check (beat)
    url: str = ""  # where a user reaches it
    port: int | None = None
    job: str | None = None  # its Prometheus job: a scrape_config's job_name in prometheus.yml
    broker: str | None = None  # the `broker` label of its target: the broker it reads (exporter, Flower)
    # Flags whose values differ between deployments (addresses, ports, paths, names): the rest
    # of the command line must be the same in docker-compose.yml.
    deployment_flags: frozenset[str] = frozenset()
    stop_wait_s: int = 10
    managed: bool = True  # False: a broker the stack only probes (RabbitMQ): nothing to start


@dataclass(frozen=True)
class Layout:
    run_dir: Path  # logs/, data and config folders of every component
    broker_url: str
    exporter_broker_url: str | None = None  # the exporter's (a read-only user); default: broker_url
    broker_name: str = file_sd.DEFAULT_BROKER  # the `broker` label of the exporter's and Flower's targets
    # Further brokers, name -> URL, each read by an exporter of its own (`exporter-<name>`, port in
    # `ports`), its target labelled with that name; no worker or Flower of theirs runs here.
    more_brokers: Mapping[str, str] = field(default_factory=dict)
    result_backend: str | None = None  # default: the broker's Redis, database 1 (as in compose); rpc:// on RabbitMQ
    management_url: str | None = None  # RabbitMQ's management API; default: the broker's host, port 15672
    flower_basic_auth: str = ""
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))  # by instance name
    instances: Mapping[str, Sequence[str]] = field(default_factory=dict)  # kind -> names; default: (kind,)
    venv_bin: Path = VENV_BIN
    tools_bin: Path = TOOLS_BIN
    worker_name: str = "worker1@%h"
    worker_queues: str | None = None  # None: every queue of the app (workers.routing.TASK_QUEUES)
    worker_pool: str | None = None  # None: Celery's default, prefork (as compose runs it)
    worker_concurrency: int | None = None  # None: Celery's default (one process per CPU)
    beat: bool = True
    exporter_consumers_interval: float | None = None  # None: the exporter's default
    alertmanager_maintenance_interval: str = "15s"
    # Alertmanager instance name -> its gossip port on 127.0.0.1; empty: no cluster, no gossip port
    alertmanager_cluster: Mapping[str, int] = field(default_factory=dict)
    alertmanager_peer_timeout: str | None = None  # None: Alertmanager's default (15 s)
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)  # by instance name
    extra_env: Mapping[str, str] = field(default_factory=dict)  # for every component

    @property
    def redis_port(self) -> int:
        return urlsplit(self.broker_url).port or DEFAULT_PORTS["redis"]

    @property
    def on_rabbitmq(self) -> bool:
        return urlsplit(self.broker_url).scheme.lower() in AMQP_SCHEMES

    @property
    def broker_api(self) -> str:
        """RabbitMQ's management API with the broker URL's credentials, as Flower's broker_api."""
        from celery_queue_exporter.rabbitmq_management import management_target

        t = management_target(self.broker_url, self.management_url)
        credentials = f"{quote(t.user, safe='')}:{quote(t.password, safe='')}"
        return f"{t.scheme}://{credentials}@{t.host}:{t.port}{t.prefix}/api/"

    @property
    def celery_env(self) -> dict[str, str]:
        """What the app's processes (worker, beat, Flower, a producer) need to find the broker."""
        env = {"CELERY_BROKER_URL": self.broker_url}
        backend = self.result_backend
        if backend is None and urlsplit(self.broker_url).scheme in ("redis", "rediss"):
            backend = self.broker_url.rsplit("/", 1)[0] + "/1"
        if backend:
            env["CELERY_RESULT_BACKEND"] = backend
        return env

    def names(self, kind: str) -> tuple[str, ...]:
        names = tuple(self.instances.get(kind, (kind,)))
        if kind == "exporter":
            names += tuple(self.exporter_of(broker) for broker in self.more_brokers)
        return names

    def exporter_of(self, broker: str) -> str:
        """The name of the exporter reading `broker`."""
        return "exporter" if broker == self.broker_name else f"exporter-{broker}"

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"


def with_args(argv: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """`argv` plus `extra`; an extra `--flag=value` replaces the same flag's value in `argv`
    (Prometheus' and Alertmanager's flag parser refuses a repeated flag)."""
    replaced = {a.split("=", 1)[0] for a in extra if a.startswith("--") and "=" in a}
    kept = [a for a in argv if not (a.startswith("--") and "=" in a and a.split("=", 1)[0] in replaced)]
    return (*kept, *extra)


def _env(lay: Layout, **own: str) -> dict[str, str]:
    return {"PYTHONUNBUFFERED": "1", **own, **lay.extra_env}


def _server(
    lay: Layout, name: str, kind: str, argv: Sequence[str], cwd: Path, probe: health.Probe, **fields: Any
) -> Component:
    """A component that listens on its port in `lay.ports`, with the common environment unless
    `env` is given."""
    env = fields.pop("env", None) or _env(lay)
    return Component(name, kind, tuple(argv), cwd, env, probe, url=lay.url(name), port=lay.ports[name], **fields)


def redis(lay: Layout, name: str) -> Component:
    """A throwaway Redis, started only where none answers at the broker URL (nothing on disk)."""
    argv = ("redis-server", "--bind", HOST, "--port", str(lay.redis_port), "--save", "", "--appendonly", "no")
    return Component(
        name,
        "redis",
        (*argv, "--dir", str(lay.run_dir / name)),
        lay.run_dir,
        _env(lay),
        health.redis_ping(lay.broker_url),
        url=lay.broker_url,
        port=lay.redis_port,
    )


def rabbitmq(lay: Layout, name: str) -> Component:
    """The RabbitMQ broker, reused as it runs (the machine's own or another): probed through its
    management API, which the exporter reads too."""
    from celery_queue_exporter.rabbitmq_management import management_target

    target = management_target(lay.broker_url, lay.management_url)
    url = target.display + "/"
    return Component(name, "rabbitmq", (), lay.run_dir, {}, health.rabbitmq(target), url=url, managed=False)


def _celery(lay: Layout, command: str) -> list[str]:
    return [str(lay.venv_bin / "celery"), "-A", "workers.app", command]


def _listen(port: int) -> list[str]:
    return ["--address", HOST, "--port", str(port)]


def worker(lay: Layout, name: str) -> Component:
    argv = [*_celery(lay, "worker"), "-n", lay.worker_name]
    if lay.worker_queues is not None:
        argv += ["-Q", lay.worker_queues]
    argv += ["-E", "--loglevel=INFO"]
    if lay.worker_pool is not None:
        argv.append(f"--pool={lay.worker_pool}")
    if lay.worker_concurrency is not None:
        argv.append(f"--concurrency={lay.worker_concurrency}")
    env, probe = _env(lay, **lay.celery_env), health.celery_ping(lay.broker_url)
    flags = frozenset({"-n", "--pool", "--concurrency"})
    return Component(name, "worker", tuple(argv), REPO, env, probe, deployment_flags=flags, stop_wait_s=20)


def beat(lay: Layout, name: str) -> Component:
    argv = [*_celery(lay, "beat"), "--loglevel=INFO", f"--schedule={lay.run_dir / name / 'celerybeat-schedule'}"]
    flags = frozenset({"--schedule"})
    return Component(name, "beat", tuple(argv), REPO, _env(lay, **lay.celery_env), None, deployment_flags=flags)


def flower(lay: Layout, name: str) -> Component:
    port = lay.ports[name]
    argv = [*_celery(lay, "flower"), f"--address={HOST}", f"--port={port}", "--conf=flower/flowerconfig.py"]
    env = _env(lay, **lay.celery_env, FLOWER_BASIC_AUTH=lay.flower_basic_auth)
    if lay.on_rabbitmq:  # Flower's Broker page reads queue lengths from the management API
        env["FLOWER_BROKER_API"] = lay.broker_api
    probe, flags = health.http_text(lay.url(name) + "/healthcheck", "OK"), frozenset({"--address", "--port"})
    return _server(
        lay, name, "flower", argv, REPO, probe, env=env, job="flower", broker=lay.broker_name, deployment_flags=flags
    )


def exporter(lay: Layout, name: str) -> Component:
    argv = [str(lay.venv_bin / "celery-queue-exporter"), *_listen(lay.ports[name])]
    if lay.exporter_consumers_interval is not None:
        argv += ["--consumers-interval", f"{lay.exporter_consumers_interval:g}"]
    # The broker URL goes through the environment: on the command line its password would show
    # in `ps` to every user of the machine.
    broker = next((b for b in lay.more_brokers if lay.exporter_of(b) == name), lay.broker_name)
    url = lay.more_brokers.get(broker, lay.exporter_broker_url or lay.broker_url)
    env = _env(lay, CELERY_EXPORTER_BROKER_URL=url)
    if lay.management_url and broker == lay.broker_name:  # may hold credentials too
        env["CELERY_EXPORTER_MANAGEMENT_URL"] = lay.management_url
    probe, flags = (
        health.exporter(lay.url(name) + "/metrics"),
        frozenset({"--address", "--port", "--consumers-interval"}),
    )
    return _server(
        lay,
        name,
        "exporter",
        argv,
        REPO,
        probe,
        env=env,
        job="celery-queue-exporter",
        broker=broker,
        deployment_flags=flags,
    )


def receiver(lay: Layout, name: str) -> Component:
    alerts = lay.run_dir / name / "alerts.jsonl"
    argv = [str(lay.venv_bin / "python"), "-m", "receiver", *_listen(lay.ports[name]), "--file", str(alerts)]
    probe, flags = health.http_ok(lay.url(name) + "/-/healthy"), frozenset({"--address", "--port", "--file"})
    return _server(lay, name, "receiver", argv, REPO, probe, deployment_flags=flags)


def alertmanager(lay: Layout, name: str) -> Component:
    """Reads run_dir/<name>/alertmanager.yml (the repository's, see native/stack.py). Silences and
    the notification log reach the disk at stop and every maintenance interval (as in compose)."""
    port = lay.ports[name]
    argv = (
        str(lay.tools_bin / "prometheus-alertmanager"),
        "--config.file=alertmanager.yml",
        "--storage.path=data",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
        f"--data.maintenance-interval={lay.alertmanager_maintenance_interval}",
    )
    probe, flags = (
        health.http_ok(lay.url(name) + "/-/ready"),
        {"--config.file", "--storage.path", "--web.listen-address"},
    )
    if lay.alertmanager_cluster:  # one of an HA pair: the same command plus the cluster's flags
        cluster = {n: f"{HOST}:{p}" for n, p in lay.alertmanager_cluster.items()}
        args = ha.alertmanager_cluster_args(name, cluster, peer_timeout=lay.alertmanager_peer_timeout)
        argv = (*ha.without_cluster(argv), *args)
        probe = health.alertmanager_cluster(lay.url(name), len(cluster))
    folder = lay.run_dir / name
    return _server(
        lay, name, "alertmanager", argv, folder, probe, job="alertmanager", deployment_flags=frozenset(flags)
    )


def prometheus(lay: Layout, name: str) -> Component:
    """Reads run_dir/<name>/prometheus.yml with its rules and file_sd targets beside it. No
    --web.enable-lifecycle: any local user could POST /-/quit; reload with `kill -HUP`."""
    port = lay.ports[name]
    folder = lay.run_dir / name
    argv = (
        str(lay.tools_bin / "prometheus"),
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={HOST}:{port}",
    )
    probe, flags = health.prometheus(lay.url(name)), {"--config.file", "--storage.tsdb.path", "--web.listen-address"}
    env = _env(lay, **{ha.REPLICA_ENV: ha.replica_of(name)})  # its `replica` label (prometheus.yml)
    return _server(
        lay, name, "prometheus", argv, folder, probe, env=env, job="prometheus", deployment_flags=frozenset(flags)
    )


BUILDERS = {
    "redis": redis,
    "worker": worker,
    "beat": beat,
    "flower": flower,
    "exporter": exporter,
    "receiver": receiver,
    "alertmanager": alertmanager,
    "prometheus": prometheus,
}


def table(lay: Layout) -> dict[str, Component]:
    """Every component of the stack, by name, in start order."""
    out: dict[str, Component] = {}
    for kind in KINDS:
        if kind == "beat" and not lay.beat:
            continue
        if kind == "redis" and lay.on_rabbitmq:
            out["rabbitmq"] = rabbitmq(lay, "rabbitmq")
            continue
        for name in lay.names(kind):
            c = BUILDERS[kind](lay, name)
            extra = lay.extra_args.get(name, ())
            out[name] = Component(**{**c.__dict__, "argv": with_args(c.argv, extra)}) if extra else c
    return out


def target_files(config: Mapping[str, Any], components: Mapping[str, Component]) -> dict[str, list[str]]:
    """The file_sd files prometheus.yml reads (paths relative to it) and the addresses each must
    list: every component of a scrape job, and the Alertmanagers alerts go to. prometheus.yml
    names the jobs; a job no component serves, or a component's job it does not scrape, is an
    error here, so the two cannot drift apart."""
    files: dict[str, list[str]] = {}
    jobs: set[str] = set()
    for scrape in config.get("scrape_configs", []):
        job = scrape["job_name"]
        jobs.add(job)
        addresses = [f"{HOST}:{c.port}" for c in components.values() if c.job == job]
        if not addresses:
            raise ValueError(f"prometheus.yml scrapes job {job!r}, which no component of native/components.py serves")
        for sd in scrape.get("file_sd_configs", []):
            for path in sd["files"]:
                files[path] = addresses
    managers = [f"{HOST}:{c.port}" for c in components.values() if c.kind == "alertmanager"]
    for am in config.get("alerting", {}).get("alertmanagers", []):
        for sd in am.get("file_sd_configs", []):
            for path in sd["files"]:
                files[path] = managers
    stray = sorted({c.job for c in components.values() if c.job and c.job not in jobs})
    if stray:
        raise ValueError(f"native/components.py gives job(s) {', '.join(stray)} that prometheus.yml does not scrape")
    return files


def target_groups(config: Mapping[str, Any], components: Mapping[str, Component]) -> dict[str, list[dict[str, Any]]]:
    """`target_files` as file_sd target groups: one group per broker, labelled with it
    (prometheus/file_sd.py), for the targets that read a broker."""
    at = {f"{HOST}:{c.port}": c for c in components.values() if c.port}
    out: dict[str, list[dict[str, Any]]] = {}
    for path, addresses in target_files(config, components).items():
        brokers = list(dict.fromkeys(at[a].broker for a in addresses))
        out[path] = [
            group for b in brokers for group in file_sd.target_groups([a for a in addresses if at[a].broker == b], b)
        ]
    return out


def write_targets(prom_dir: Path, config: Mapping[str, Any], components: Mapping[str, Component]) -> None:
    for path, groups in target_groups(config, components).items():
        dest = prom_dir / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(file_sd.dump(groups))
