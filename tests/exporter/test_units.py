"""Pure functions: kombu key names, binding routing, unacked entry parsing (no processes needed)."""

from __future__ import annotations

import json

from celery_queue_exporter.discovery import BindingTable
from celery_queue_exporter.redis_broker import unacked_routing
from celery_queue_exporter.redis_layout import RedisLayout, is_internal_queue


def test_layout_matches_kombu():
    from kombu.transport.redis import Channel

    layout = RedisLayout(global_keyprefix="pfx:")
    assert layout.list_keys("q") == ["pfx:q", "pfx:q\x06\x163", "pfx:q\x06\x166", "pfx:q\x06\x169"]
    assert [layout.step_for(p) for p in range(10)] == [Channel.priority(Channel, p) for p in range(10)]
    assert layout.binding_key_prefix == "pfx:" + Channel.keyprefix_queue % ""
    assert is_internal_queue("celeryev.1234") and is_internal_queue("w1@host.celery.pidbox")
    assert not is_internal_queue("default")


def test_routing_of_bindings():
    layout = RedisLayout()
    table = BindingTable(layout)
    sep = layout.sep
    table.update(
        b"0",
        [
            (b"_kombu.binding.work", [f"urgent{sep}{sep}high".encode(), f"later{sep}{sep}low".encode()]),
            (b"_kombu.binding.topics", [f"orders.*{sep}{sep}orders".encode()]),
            (b"_kombu.binding.fan", [f"{sep}{sep}only".encode()]),
        ],
    )
    assert table.route("work", "urgent", set()) == "high"
    assert table.route("work", "later", set()) == "low"
    assert table.route("topics", "orders.created", set()) == "orders"
    assert table.route("fan", "anything", set()) == "only"
    assert table.route("", "direct-to-queue", set()) == "direct-to-queue"
    assert table.route("unknown", "q", {"q"}) == "q"
    assert table.route("unknown", "nope", set()) is None
    assert table.queues() == {"high", "low", "orders", "only"}
    table.update(b"0", [])  # a whole pass without them: forgotten
    assert table.queues() == set()


def test_unacked_routing_parts():
    message = {"body": "e30=", "headers": {"argsrepr": '("}, \\"x", 1)'}, "properties": {"delivery_tag": "t"}}
    entry = json.dumps([message, 'ex"ch', "rk\\1"]).encode()
    tail = b"[" + entry[entry.rfind(b'}, "') + 3 :]  # what the Lua script returns
    assert unacked_routing(tail) == ('ex"ch', "rk\\1")
    assert unacked_routing(entry) == ('ex"ch', "rk\\1")  # a whole small entry
    assert unacked_routing(b"garbage") is None
    assert unacked_routing(b"[1, 2]") is None


def test_columns_a_broker_cannot_know_are_absent_and_zero_is_reported():
    """The BrokerReading contract a second broker kind relies on: None drops the metric, 0 reports 0;
    consumers the broker knows itself are reported without any inspect reading."""
    from celery_queue_exporter.broker import BrokerReading
    from celery_queue_exporter.collectors import HealthCollector, QueueCollector, WorkersCollector

    reading = BrokerReading(up=True, queues=["a", "b"], ready=[5, 0], unacked=[0, 0], consumers=[2, 0])
    families = [
        *QueueCollector().families(reading),
        *WorkersCollector(None).families(reading),
        *HealthCollector(("http",), None).families(reading),
    ]
    values = {f.name: dict(zip(f.columns[0], f.values, strict=True)) if f.columns else f.values for f in families}
    assert values["celery_queue_length"] == {"a": 5, "b": 0}
    assert values["celery_queue_unacked"] == {"a": 0, "b": 0}
    assert values["celery_queue_consumers"] == {"a": 2, "b": 0}
    assert values["celery_exporter_scrape_errors"] == {"http": 0}
    absent = {
        "celery_queue_priority_length",
        "celery_queue_oldest_message_age_seconds",
        "celery_queue_unacked_oldest_age_seconds",
        "celery_queue_consumers_timestamp_seconds",
        "celery_worker_up",
        "celery_broker_visibility_timeout_seconds",
        "celery_exporter_unacked_unattributed",
        "celery_exporter_redis_round_trips",
    }
    assert not absent & set(values), absent & set(values)
    down = [f.name for f in QueueCollector().families(BrokerReading(up=False))]
    assert down == []
