"""Highly available alerting: two Prometheus replicas and two Alertmanagers in one cluster.

Every instance runs the repository's config files unchanged. The replicas share
prometheus/prometheus.yml and the rules; PROMETHEUS_REPLICA in a replica's environment becomes
its `replica` external label, which the file's alert_relabel_configs drop from alerts, so both
replicas' copies of an alert are one alert to Alertmanager. Each replica sends to every
Alertmanager in its targets/alertmanager.yml, directly. The Alertmanagers gossip silences and the
notification log over their cluster port: the first in the cluster's order (by peer name)
notifies, each other one waits its position times --cluster.peer-timeout and notifies only what
the log does not hold yet (Alertmanager's design: at least once, a duplicate rather than a loss).

The plain stack is replica a alone: its prometheus and alertmanager. HA adds prometheus-b and
alertmanager-b, as instances of the same rows of native/components.py (`INSTANCES`), and
docker-compose.ha.yml adds the same services to docker-compose.yml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

REPLICAS = ("a", "b")
SINGLE = REPLICAS[0]  # the one Prometheus and Alertmanager of the plain stack
REPLICA_ENV = "PROMETHEUS_REPLICA"  # read by prometheus/prometheus.yml: external label `replica`
KINDS = ("prometheus", "alertmanager")
CLUSTER_PORT = 9094  # Alertmanager's default gossip port (compose: inside its network only)


def instance(kind: str, replica: str) -> str:
    """The name of one instance: prometheus (replica a, as in the plain stack), prometheus-b."""
    return kind if replica == SINGLE else f"{kind}-{replica}"


def replica_of(name: str) -> str:
    """prometheus -> a, prometheus-b -> b."""
    kind, _, replica = name.partition("-")
    if kind not in KINDS or (replica and replica not in REPLICAS[1:]):
        raise ValueError(f"{name!r} is no instance of {', '.join(KINDS)}")
    return replica or SINGLE


# The instances of an HA stack, as native/components.py's Layout(instances=...) takes them.
INSTANCES = {kind: tuple(instance(kind, r) for r in REPLICAS) for kind in KINDS}
# The native runner's ports of the instances the plain stack does not have (docker-compose.ha.yml
# publishes the same on the host), and the Alertmanagers' gossip ports (127.0.0.1 only).
DEFAULT_PORTS = {"prometheus-b": 9091, "alertmanager-b": 9095}
DEFAULT_CLUSTER_PORTS = {"alertmanager": CLUSTER_PORT, "alertmanager-b": 9096}


def alertmanager_cluster_args(
    name: str, cluster: Mapping[str, str], listen: str | None = None, peer_timeout: str | None = None
) -> list[str]:
    """Alertmanager flags that put instance `name` in the cluster `cluster` (instance name ->
    host:port its peers reach it at). It listens on `listen` (default: its own address, which it
    then advertises explicitly: on loopback Alertmanager refuses to guess one). Its peer name is
    its instance name, so the cluster's order is alertmanager, alertmanager-b."""
    own = cluster[name]
    args = [f"--cluster.listen-address={listen or own}"]
    if listen is None:
        args.append(f"--cluster.advertise-address={own}")
    args.append(f"--cluster.peer-name={name}")
    args += [f"--cluster.peer={address}" for peer, address in cluster.items() if peer != name]
    if peer_timeout is not None:
        args.append(f"--cluster.peer-timeout={peer_timeout}")
    return args


def without_cluster(argv: Sequence[str]) -> list[str]:
    """A single Alertmanager's command line without its cluster flags (it has
    --cluster.listen-address= to open no gossip port), ready for alertmanager_cluster_args()."""
    return [arg for arg in argv if not arg.startswith("--cluster.")]
