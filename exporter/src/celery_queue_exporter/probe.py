"""The multi-target endpoint, `/probe?target=NAME`, as blackbox_exporter and redis_exporter have it:
NAME is one of the brokers defined under `targets:` in the config file, never a URL.

Every target is created at start-up, one `Target` each (its own broker reader, discovery state,
caches and consumers thread), and a request can only pick one of them: the exporter's state is
bounded by the targets configured, whatever the requests. The query string is checked before any
target is looked up, so a malformed or unknown name gets 400 and touches no broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl

from celery_queue_exporter.config import TARGET_NAME, TARGET_NAME_RULE, Config
from celery_queue_exporter.connection import BrokerUrlError
from celery_queue_exporter.server import BadRequest
from celery_queue_exporter.target import Target

PARAM = "target"
MAX_QUERY = 512  # characters: a name is at most 63; anything longer is not a probe request


def target_name(query: str) -> str:
    """The target name a /probe query string asks for; BadRequest if it is not exactly `target=NAME`.
    The messages never echo a malformed value: it may be a URL with a password in it."""
    if len(query) > MAX_QUERY:
        raise BadRequest(f"query string too long; expected {PARAM}=NAME")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=8)
    except ValueError:
        raise BadRequest(f"malformed query string; expected {PARAM}=NAME") from None
    if any(key != PARAM for key, _ in pairs):
        raise BadRequest(f"unknown query parameter; /probe takes one: {PARAM}=NAME")
    names = [value for _, value in pairs]
    if not names:
        raise BadRequest(f"missing parameter {PARAM}=NAME (a target of the exporter's config file)")
    if len(names) > 1:
        raise BadRequest(f"parameter {PARAM} given {len(names)} times; expected once")
    if not TARGET_NAME.fullmatch(names[0]):
        raise BadRequest(
            f"malformed target name: use {TARGET_NAME_RULE}; NAME is a target of the exporter's config "
            "file, never a broker URL"
        )
    return names[0]


class ProbeTargets:
    """The configured targets by name; `exposition(query)` serves one /probe request."""

    def __init__(self, targets: Mapping[str, Target]) -> None:
        self.targets = dict(targets)

    @classmethod
    def from_configs(
        cls, configs: Mapping[str, Config], static_queues: Callable[[Config], Sequence[str]]
    ) -> ProbeTargets:
        """Raises BrokerUrlError naming the target whose broker URL no broker kind serves."""
        targets: dict[str, Target] = {}
        try:
            for name, config in configs.items():
                try:
                    targets[name] = Target.from_config(config, static_queues(config), build_info=False)
                except BrokerUrlError as exc:
                    raise BrokerUrlError(f"target {name!r}: {exc}") from None
        except BaseException:
            for target in targets.values():
                target.stop()
            raise
        return cls(targets)

    @property
    def names(self) -> list[str]:
        return list(self.targets)

    def start(self) -> None:
        for target in self.targets.values():
            target.start()

    def stop(self) -> None:
        for target in self.targets.values():
            target.stop()

    def exposition(self, query: str) -> bytes:
        name = target_name(query)
        target = self.targets.get(name)
        if target is None:
            where = "in the exporter's config file" if self.targets else "(the exporter's config file defines none)"
            raise BadRequest(f"unknown target {name!r}: not one of the targets {where}")
        return target.exposition()
