"""Fuzzing the alert receiver's HTTP endpoint, a real `python -m receiver` process, with hypothesis:
arbitrary methods, paths, Content-Length headers and bodies, and Alertmanager payloads with
anything in them. Each request has one expected answer, stated here from the webhook format and
the receiver's README, not asked of its code: every well-formed payload is answered 200 and is the
last line of the JSON-lines file, byte for byte as JSON; every broken one gets 400 naming what is
wrong and adds nothing to the file; other methods and paths their one status. No handler raises."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.procs import Proc, free_port, wait_until

EXAMPLES = 300


class Receiver:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.file = tmp / "alerts.jsonl"
        self.proc = Proc(
            "receiver",
            [sys.executable, "-m", "receiver", "--port", str(self.port), "--file", str(self.file)],
            tmp,
            env={"PYTHONUNBUFFERED": "1"},
        )
        wait_until(lambda: self.request(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200, 10, "receiver")
        self.sent = 0

    def request(self, raw: bytes, half_close: bool = False) -> tuple[int | None, bytes]:
        """Send raw bytes; (status, body) of the answer, status None when none came."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as sock:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = [
                    int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
        if not data.startswith(b"HTTP/"):
            return None, data
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body

    def file_size(self) -> int:
        return self.file.stat().st_size if self.file.exists() else 0

    def records_since(self, size: int) -> list[dict]:
        """The records written after the file had `size` bytes."""
        with open(self.file, "rb") as f:
            f.seek(size)
            return [json.loads(line) for line in f.read().splitlines()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    r = Receiver(tmp_path_factory.mktemp("receiver"))
    try:
        yield r
    finally:
        r.proc.stop()


@pytest.fixture
def receiver(server: Receiver) -> Iterator[Receiver]:
    """The module's receiver, checked after each test on its own: a handler thread that raised
    leaves a traceback in the log even though the process lives on."""
    start = len(server.proc.log())
    yield server
    assert server.proc.alive()
    log = server.proc.log()[start:]  # this test's part only
    assert "Traceback" not in log, log[-3000:]


def http(method: str, path: str, body: bytes, length: str | None, extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode("latin-1")
    if length is not None:
        head += b"Content-Length: " + length.encode("latin-1") + b"\r\n"
    return head + extra + b"\r\n" + body


# -- strategies ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
# Any text a label may hold, plus what JSON can carry and UTF-8 cannot: lone surrogates.
label_text = st.text() | st.sampled_from(["\ud800", "x\udfffy", "\x00", "\u2028", "\x1b[31m", "🔥" * 50, "é" * 5000])
alert = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": st.dictionaries(label_text, label_text, max_size=6),
        "annotations": st.dictionaries(label_text, label_text, max_size=3),
    },
    optional={
        "startsAt": st.text() | st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z"]),
        "endsAt": st.text() | st.sampled_from(["2026-01-01T00:05:00.123456789Z", "not a time"]),
        "generatorURL": st.text(),
        "fingerprint": st.text(),
    },
)
valid_payload = st.fixed_dictionaries(
    {"alerts": st.lists(alert, max_size=5)},
    optional={"status": st.text(), "receiver": st.text(), "groupLabels": st.dictionaries(st.text(), st.text())},
)


# Each way of breaking a well-formed payload, and the part of the error naming it. The values
# drawn are wrong by construction (the filters), whatever the receiver thinks of them.
not_a_list = json_values.filter(lambda v: not isinstance(v, list))
not_an_object = json_values.filter(lambda v: not isinstance(v, dict))
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
not_a_status = json_values.filter(lambda v: v not in ("firing", "resolved"))


def breakage(payload: dict, data: st.DataObject) -> tuple[object, str]:
    """(a payload broken in one place, what the 400's error must say)."""
    alerts = payload["alerts"] or [{"status": "firing", "labels": {}, "annotations": {}}]
    first, rest = dict(alerts[0]), alerts[1:]
    where = data.draw(st.sampled_from(["root", "no alerts", "alerts", "alert", "status", "map", "value"]))
    if where == "root":
        return data.draw(not_an_object), "no alerts list"
    if where == "no alerts":
        return {k: v for k, v in payload.items() if k != "alerts"}, "no alerts list"
    if where == "alerts":
        return {**payload, "alerts": data.draw(not_a_list)}, "no alerts list"
    if where == "alert":
        return {**payload, "alerts": [data.draw(not_an_object), *rest]}, "alerts[0] is not an object"
    if where == "status":
        if data.draw(st.booleans()):
            first.pop("status")
        else:
            first["status"] = data.draw(not_a_status)
        return {**payload, "alerts": [first, *rest]}, "alerts[0].status"
    key = data.draw(st.sampled_from(["labels", "annotations"]))
    if where == "map":
        first[key] = data.draw(not_an_object)
    else:
        first[key] = {**first[key], "alertname": data.draw(not_a_string)}
    return {**payload, "alerts": [first, *rest]}, f"alerts[0].{key}"


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes


VALID_BODY = dumps({"alerts": [{"status": "firing", "labels": {"alertname": "Fuzz"}, "annotations": {}}]})
HEALTH = ("/-/healthy", "/-/ready", "/alerts")
MAX_BODY = 1 << 20  # the README's limit


def expected_status(method: str, path: str, body: bytes, declared: str | None) -> int | None:
    """What the receiver must answer (None: nothing, the client hung up mid-body)."""
    if method == "GET":
        return 200 if path in HEALTH else 404
    if method != "POST":
        return 501
    declared = None if declared is None else declared.strip(" \t")  # whitespace is no part of a value
    if not declared:  # no length given, or an empty one
        return 411
    if not (declared.isascii() and declared.isdigit()):
        return 400
    if int(declared) > MAX_BODY:
        return 413
    if int(declared) > len(body):
        return None
    return 200 if body[: int(declared)] == VALID_BODY else 400


# -- the tests -------------------------------------------------------------------------------

# `receiver` is function-scoped on purpose: its check runs once after all examples of a test.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(payload=valid_payload)
def test_every_well_formed_payload_is_accepted_and_stored(receiver: Receiver, payload: dict) -> None:
    body = dumps(payload)
    size = receiver.file_size()
    status, answer = receiver.request(http("POST", "/", body, str(len(body))))
    assert status == 200, (status, answer[:300], payload)
    assert [r["payload"] for r in receiver.records_since(size)] == [json.loads(body)]


@FUZZ
@given(payload=valid_payload, data=st.data())
def test_malformed_payloads_get_a_clear_400_and_store_nothing(
    receiver: Receiver, payload: dict, data: st.DataObject
) -> None:
    broken, says = breakage(payload, data)
    body = dumps(broken)
    size = receiver.file_size()
    status, answer = receiver.request(http("POST", "/", body, str(len(body))))
    assert status == 400, (status, answer[:300], broken)
    assert says in json.loads(answer)["error"], (answer[:300], broken)
    assert receiver.file_size() == size


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
    path=st.sampled_from(["/", *HEALTH, "/metrics"])
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=50).map(lambda p: "/" + p),
    # anything but a webhook payload, or the one valid payload
    body=st.binary(max_size=2048)
    | json_values.filter(lambda v: not (isinstance(v, dict) and "alerts" in v)).map(dumps)
    | st.just(VALID_BODY),
    length=st.none()
    | st.just("exact")
    | st.integers(-5, 1 << 21).map(str)
    | st.sampled_from(["+5", "0x5", "-1", "1_0", "5 ", " 5", "1e3", "99999999999999999999999", "\xb2", "\xb9\xb2"])
    | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=12),
)
def test_arbitrary_requests_get_their_one_answer(
    receiver: Receiver, method: str, path: str, body: bytes, length: str | None
) -> None:
    declared = str(len(body)) if length == "exact" else length
    expected = expected_status(method, path, body, declared)
    # A client that declares more than it sends and stops: the receiver gets EOF and hangs up.
    short = expected is None
    size = receiver.file_size()
    status, answer = receiver.request(http(method, path, body, declared), half_close=short)
    assert status == expected, (status, answer[:300])
    if status in (400, 404, 411, 413):  # the receiver's own refusals (501 is http.server's)
        assert json.loads(answer)["error"], answer[:300]
    grew = receiver.file_size() != size
    assert grew == (method == "POST" and status == 200)


def test_lone_surrogates_are_stored_as_sent(receiver: Receiver) -> None:
    # JSON can carry what UTF-8 cannot; Alertmanager never sends it, the receiver keeps it escaped.
    payload = {"alerts": [{"status": "firing", "labels": {"alertname": "x\ud800"}, "annotations": {}}]}
    body = dumps(payload)
    size = receiver.file_size()
    status, _ = receiver.request(http("POST", "/", body, str(len(body))))
    assert status == 200
    assert [r["payload"] for r in receiver.records_since(size)] == [payload]
    receiver.file.read_text(encoding="utf-8", errors="strict")  # the file stays valid UTF-8


def test_non_ascii_digits_in_content_length(receiver: Receiver) -> None:
    status, answer = receiver.request(http("POST", "/", b"{}", "\xb2"), half_close=True)
    assert status == 400, (status, answer)
    assert "Content-Length" in json.loads(answer)["error"]


def test_whitespace_around_content_length_is_no_part_of_it(receiver: Receiver) -> None:
    status, answer = receiver.request(http("POST", "/", VALID_BODY, f"{len(VALID_BODY)} \t"))
    assert status == 200, (status, answer)
