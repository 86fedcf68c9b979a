"""Broker URLs, least privilege and bad answers: one clear line, a counted reason, no traceback."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kombu import Connection, Exchange, Queue

from celery_queue_exporter.connection import BrokerUrlError
from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.rabbitmq_management import ManagementClient, management_target
from celery_queue_exporter.rabbitmq_reading import RabbitMQReader
from tests.rabbitmq.helpers import by_queue, make_reader, read_until
from tests.support.procs import free_port
from tests.support.rabbitmq import RabbitMQNode

SECRET = "s3cr3t-p@ss"
LOGGER = "celery_queue_exporter.rabbitmq_reading"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@h:5672//", ("http", "h", 15672, "u", "p", "/")),
        ("pyamqp://h", ("http", "h", 15672, "guest", "guest", "/")),
        ("amqp://u:p@h/", ("http", "h", 15672, "u", "p", "/")),
        ("amqp://u:p@h/%2F", ("http", "h", 15672, "u", "p", "/")),
        ("amqp://u:p@h/orders", ("http", "h", 15672, "u", "p", "orders")),
        ("amqp://u:p@h/v%2F1", ("http", "h", 15672, "u", "p", "v/1")),
        ("amqps://u:p%40x@h:5671/v?ssl_cert_reqs=CERT_NONE", ("https", "h", 15671, "u", "p@x", "v")),
        ("amqp://u:p@a:5672//;amqp://u:p@b:5672//", ("http", "a", 15672, "u", "p", "/")),
    ],
)
def test_the_management_api_is_derived_from_the_broker_url(url: str, expected: tuple) -> None:
    t = management_target(url)
    assert (t.scheme, t.host, t.port, t.user, t.password, t.vhost) == expected


def test_the_management_url_overrides_address_and_credentials_not_the_vhost() -> None:
    t = management_target("amqp://app:pw@rabbit/orders", "https://mon:m%40n@proxy:8443/rabbitmq/?ssl_cert_reqs=none")
    assert (t.scheme, t.host, t.port, t.prefix) == ("https", "proxy", 8443, "/rabbitmq")
    assert (t.user, t.password, t.vhost) == ("mon", "m@n", "orders")
    assert t.queues_path() == "/rabbitmq/api/queues/orders"
    assert t.display == "https://proxy:8443/rabbitmq"
    plain = management_target("amqp://app:pw@rabbit//", "http://127.0.0.1:15999")
    assert (plain.user, plain.password, plain.queues_path()) == ("app", "pw", "/api/queues/%2F")


@pytest.mark.parametrize(
    ("url", "management_url", "message"),
    [
        (f"redis://u:{SECRET}@h/0", None, "unsupported broker URL scheme 'redis'"),
        (f"amqp://u:{SECRET}@h:99999//", None, "bad port"),
        (f"amqps://u:{SECRET}@h//?ssl_cert_reqs=maybe", None, "bad ssl_cert_reqs"),
        (f"amqp://u:{SECRET}@h//", f"ftp://u:{SECRET}@h", "--management-url must be http(s)"),
        (f"amqp://u:{SECRET}@/vhost", None, "no host"),
    ],
)
def test_bad_urls_are_one_line_without_the_password(url: str, management_url: str | None, message: str) -> None:
    with pytest.raises(BrokerUrlError) as info:
        management_target(url, management_url)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert SECRET not in text


def read_once(reader: RabbitMQReader, caplog: pytest.LogCaptureFixture) -> tuple[object, list[str]]:
    """Two scrapes of a broken broker: the second must not log the same problem again."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = reader.read()
        second = reader.read()
    assert not first.up and not second.up
    assert first.queues == [] and first.errors == second.errors
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert SECRET not in lines[0] and "\n" not in lines[0]
    assert not any(r.exc_info for r in caplog.records)
    return first, lines


def test_wrong_credentials_unknown_vhost_and_no_management_api(
    rabbitmq: RabbitMQNode, vhost: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = make_reader(rabbitmq, vhost, broker_url=rabbitmq.amqp_url(vhost, password=SECRET))
    reading, lines = read_once(wrong, caplog)
    assert reading.errors == {"rabbitmq_auth": 1}
    assert "refused user 'admin' (HTTP 401" in lines[0]

    reading, lines = read_once(make_reader(rabbitmq, "no-such-vhost"), caplog)
    assert reading.errors == {"rabbitmq_not_found": 1}
    assert "no vhost 'no-such-vhost'" in lines[0]

    # A node without the management plugin: nothing listens where the API should be.
    closed = make_reader(rabbitmq, vhost, management_url=f"http://127.0.0.1:{free_port()}")
    reading, lines = read_once(closed, caplog)
    assert reading.errors == {"rabbitmq_unreachable": 1}
    assert "Connection refused" in lines[0] and "rabbitmq_management plugin enabled" in lines[0]

    # The AMQP port instead of the management port: an answer that is not HTTP.
    amqp = make_reader(rabbitmq, vhost, management_url=f"http://127.0.0.1:{rabbitmq.amqp_port}")
    reading, lines = read_once(amqp, caplog)
    assert reading.errors == {"rabbitmq_unreachable": 1}

    # The good reader, after all that, still reads (and says so once).
    caplog.clear()
    assert make_reader(rabbitmq, vhost).read().up


def test_least_privilege_monitoring_tag_and_empty_permissions(rabbitmq: RabbitMQNode, vhost: str) -> None:
    rabbitmq.declare_queue(vhost, "jobs")
    with Connection(rabbitmq.amqp_url(vhost)) as conn:
        conn.Producer().publish({"n": 1}, exchange="", routing_key="jobs")
    rabbitmq.add_user("monitor", SECRET, tags="monitoring")

    # No permission entry on the vhost: RabbitMQ hides its queues (401 on the vhost's list).
    no_entry = make_reader(rabbitmq, vhost, broker_url=rabbitmq.amqp_url(vhost, "monitor", SECRET))
    reading = no_entry.read()
    assert not reading.up and reading.errors == {"rabbitmq_auth": 1}

    rabbitmq.set_permissions(vhost, "monitor", "^$", "^$", "^$")
    reader = make_reader(rabbitmq, vhost, broker_url=rabbitmq.amqp_url(vhost, "monitor", SECRET))
    reading = read_until(reader, lambda r: by_queue(r).get("jobs", (0,))[0] == 1, "the monitor user sees 1 ready")
    assert reading.up and not reading.errors

    # And that user can change nothing: publishing and declaring are refused.
    with Connection(rabbitmq.amqp_url(vhost, "monitor", SECRET)) as conn, pytest.raises(Exception, match="ACCESS"):
        Queue("mine", Exchange("mine"), "mine", channel=conn.default_channel).declare()
    with Connection(rabbitmq.amqp_url(vhost, "monitor", SECRET)) as conn:
        producer = conn.Producer()
        producer.publish({"n": 2}, exchange="", routing_key="jobs")  # refused asynchronously
        with pytest.raises(Exception, match="ACCESS_REFUSED"):
            conn.default_channel.basic_qos(0, 1, False)  # the next round trip reports it
    assert rabbitmq.wait_stats(vhost, "jobs", messages_ready=1)


def test_odd_queue_names_are_read_as_they_are(rabbitmq: RabbitMQNode, vhost: str) -> None:
    names = ['odd name "quoted" \\ back', "ünïcödé.queue:with/slash", "tab\there", "#{bad}*"]
    for name in names:
        rabbitmq.declare_queue(vhost, name)
    reading = read_until(make_reader(rabbitmq, vhost), lambda r: len(r.queues) == len(names), "four odd queues")
    assert sorted(reading.queues) == sorted(names)
    assert not reading.errors


class Scripted(BaseHTTPRequestHandler):
    """Answers every GET with the server's (status, body): a management API gone wrong."""

    def do_GET(self) -> None:
        status, body, delay = self.server.reply  # type: ignore[attr-defined]
        time.sleep(delay)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.reply = (200, [], 0.0)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def scripted_reader(server: ThreadingHTTPServer, timeout: float = 5) -> RabbitMQReader:
    target = management_target(f"amqp://u:{SECRET}@h//", f"http://127.0.0.1:{server.server_address[1]}")
    return RabbitMQReader(ManagementClient(target, timeout), QueueSet(["configured"], 300, 5000))


@pytest.mark.parametrize(
    ("reply", "reason", "says"),
    [
        ((500, {"error": "Internal Server Error", "reason": "boom\nat 3"}, 0), "rabbitmq_http", "HTTP 500: boom at 3"),
        ((503, "<html>busy</html>", 0), "rabbitmq_http", "answered HTTP 503"),
        ((200, "<html>not json</html>", 0), "malformed_reply", "not JSON"),
        ((200, {"items": "nope"}, 0), "malformed_reply", "did not answer with a page"),
        ((200, [], 1.0), "rabbitmq_unreachable", "timed out"),
    ],
)
def test_a_management_api_gone_wrong(
    scripted: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture, reply: tuple, reason: str, says: str
) -> None:
    scripted.reply = reply  # type: ignore[attr-defined]
    reading, lines = read_once(scripted_reader(scripted, timeout=0.5), caplog)
    assert reading.errors == {reason: 1}
    assert says in lines[0]


def test_malformed_queue_entries_are_skipped_and_counted(scripted: ThreadingHTTPServer) -> None:
    items = [
        {"name": "good", "messages_ready": 3, "messages_unacknowledged": 1, "consumers": 2},
        {"name": "no_stats_yet"},
        {"name": "nulls", "messages_ready": None, "head_message_timestamp": None},
        {"name": 5, "messages_ready": 1},
        {"name": "text_count", "messages_ready": "7"},
        {"name": "negative", "messages_ready": -1},
        {"name": "float_count", "consumers": 1.5},
        "not an object",
        {"name": "celeryev.1f2e", "messages_ready": 9},
        {"name": "bad_stamp", "messages_ready": 2, "head_message_timestamp": "yesterday"},
    ]
    scripted.reply = (200, {"items": items, "page": 1, "page_count": 1}, 0)  # type: ignore[attr-defined]
    reading = scripted_reader(scripted).read()
    assert reading.up
    assert reading.errors == {"malformed_queue": 6}
    assert by_queue(reading) == {
        "configured": (0, 0, 0, 0.0),
        "bad_stamp": (2, 0, 0, None),
        "good": (3, 1, 2, None),
        "no_stats_yet": (0, 0, 0, 0.0),
        "nulls": (0, 0, 0, 0.0),
    }
