"""Highly available alerting: two Prometheus replicas and two Alertmanagers in one cluster.

Every instance runs the repository's config files unchanged. The replicas share
prometheus/prometheus.yml and the rules; PROMETHEUS_REPLICA in a replica's environment becomes
its `replica` external label, which the file's alert_relabel_configs drop from alerts, so both
replicas' copies of an alert are one alert to Alertmanager. Each replica sends to every
Alertmanager in its targets/alertmanager.yml, directly. The Alertmanagers gossip silences and the
notification log over their cluster port: the first in the cluster's order notifies, each
other one waits its position times --cluster.peer-timeout and notifies only what the log does
not hold yet (Alertmanager's design: at least once, a duplicate rather than a loss).

The native runner, the test topology (tests/ha/) and docker-compose.ha.yml build their
instances from these functions and names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

REPLICAS = ("a", "b")
SINGLE = REPLICAS[0]  # the one Prometheus and Alertmanager of the plain stack
REPLICA_ENV = "PROMETHEUS_REPLICA"  # read by prometheus/prometheus.yml: external label `replica`
CLUSTER_PORT = 9094  # Alertmanager's default gossip port (compose: inside the network only)


def instance(component: str, replica: str) -> str:
    """The name of one instance: prometheus-a, alertmanager-b."""
    return f"{component}-{replica}"


def targets_file(addresses: Iterable[str]) -> str:
    """A file_sd targets file with every `host:port` in one group."""
    return "- targets: [" + ", ".join(f"'{a}'" for a in addresses) + "]\n"


def alertmanager_cluster_args(
    replica: str, cluster: Mapping[str, str], listen: str | None = None, peer_timeout: str | None = None
) -> list[str]:
    """Alertmanager flags that put `replica` in the cluster `cluster` (replica -> host:port its
    peers reach it at). It listens on `listen` (default its own address) and advertises its
    address explicitly, since Alertmanager refuses to guess one on loopback. The peer name is
    the instance name, so the cluster's order (which one notifies first) is a, then b."""
    own = cluster[replica]
    args = [f"--cluster.listen-address={listen or own}"]
    if listen is None:
        args.append(f"--cluster.advertise-address={own}")
    args.append(f"--cluster.peer-name={instance('alertmanager', replica)}")
    args += [f"--cluster.peer={address}" for name, address in cluster.items() if name != replica]
    if peer_timeout is not None:
        args.append(f"--cluster.peer-timeout={peer_timeout}")
    return args


def without_cluster(argv: Sequence[str]) -> list[str]:
    """A single Alertmanager's command line without its cluster flags (it has
    --cluster.listen-address= to open no gossip port), ready for alertmanager_cluster_args()."""
    return [arg for arg in argv if not arg.startswith("--cluster.")]


def with_flags(argv: Sequence[str], flags: Mapping[str, str]) -> list[str]:
    """`argv` with each `--flag=value` of `flags` ({"--storage.path": "..."}) replacing the one
    it has, or appended where it has none."""
    out = list(argv)
    for flag, value in flags.items():
        where = [i for i, arg in enumerate(out) if arg.startswith(flag + "=")]
        if where:
            out[where[0]] = f"{flag}={value}"
        else:
            out.append(f"{flag}={value}")
    return out
