"""The file_sd target files Prometheus reads (targets/<job>.yml), and the `broker` label each
per-broker target carries there: the exporter's and Flower's. Rules, Alertmanager's grouping and
the dashboards tell brokers apart by it, so two apps' `default` queues never merge.

native/components.py writes the native runner's and the test stack's targets with it; the
committed compose targets (targets/compose/) are checked against the same by the tests."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml

from prometheus.generate import load as load_alerting
from prometheus.generate.catalog import BROKER_LABEL

# The broker name when the user names none (BROKER_NAME): one broker needs no name of its own.
DEFAULT_BROKER = "default"
# A broker name lands in label matchers, Grafana URLs and notification texts: keep it plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class BrokerNameError(ValueError):
    """A broker name that cannot be used as a label value in every layer."""


def check_broker_name(name: str) -> str:
    if not _NAME.match(name):
        raise BrokerNameError(
            f"broker name {name!r}: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def target_groups(addresses: Sequence[str], broker: str | None = None) -> list[dict[str, object]]:
    """One file_sd target group: `addresses`, labelled with `broker` when the job is per broker."""
    group: dict[str, object] = {"targets": list(addresses)}
    if broker is not None:
        group["labels"] = {BROKER_LABEL: check_broker_name(broker)}
    return [group]


def dump(groups: Sequence[Mapping[str, object]]) -> str:
    """The text of a targets/<job>.yml file."""
    return yaml.safe_dump(list(groups), default_flow_style=None, sort_keys=False)


def per_broker_jobs() -> frozenset[str]:
    """The jobs whose targets each read one broker: the exporter's and Flower's (alerting.yml `jobs`);
    Prometheus and Alertmanager serve the whole stack."""
    return frozenset(load_alerting().settings["jobs"].values())
