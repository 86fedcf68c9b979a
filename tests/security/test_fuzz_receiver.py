"""Fuzzing the alert receiver's HTTP endpoint, a real `python -m receiver` process, with hypothesis:
arbitrary methods, paths, Content-Length headers and bodies, and Alertmanager payloads with
anything in them. It must never crash, always answer a clear error (4xx, JSON with "error") to
what it refuses, accept every well-formed payload, and keep its JSON-lines file valid."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.server import payload_problem
from tests.faults.support import Report
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


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    r = Receiver(tmp_path_factory.mktemp("receiver"))
    try:
        yield r
    finally:
        r.proc.stop()


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


def mutate(payload: dict, data: st.DataObject) -> object:
    """A well-formed payload with one part replaced by any JSON value."""
    where = data.draw(st.sampled_from(["root", "alerts", "alert", "labels", "annotations", "status", "label"]))
    value = data.draw(json_values)
    if where == "root":
        return value
    if where == "alerts":
        return {**payload, "alerts": value}
    if not payload["alerts"]:
        return {**payload, "alerts": [value]}
    first = dict(payload["alerts"][0])
    if where == "alert":
        return {**payload, "alerts": [value, *payload["alerts"][1:]]}
    if where == "label":
        first["labels"] = {**first["labels"], "alertname": value}
    else:
        first[where] = value
    return {**payload, "alerts": [first, *payload["alerts"][1:]]}


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes


REFUSALS = {400, 404, 405, 408, 411, 413, 414, 431, 501}


def check_refusal(status: int | None, body: bytes) -> None:
    assert status is not None, "no answer at all"
    assert status in REFUSALS, (status, body[:300])
    if status in (400, 404, 408, 411, 413) and body.startswith(b"{"):
        assert "error" in json.loads(body)


# -- the tests -------------------------------------------------------------------------------

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(payload=valid_payload)
def test_every_well_formed_payload_is_accepted_and_stored(receiver: Receiver, payload: dict) -> None:
    status, body = receiver.request(http("POST", "/", dumps(payload), str(len(dumps(payload)))))
    assert status == 200, (status, body[:300], payload)
    assert receiver.proc.alive()


@FUZZ
@given(payload=valid_payload, data=st.data())
def test_malformed_payloads_get_a_clear_400(receiver: Receiver, payload: dict, data: st.DataObject) -> None:
    broken = mutate(payload, data)
    body = dumps(broken)
    status, answer = receiver.request(http("POST", "/", body, str(len(body))))
    if payload_problem(broken) is None:
        assert status == 200, (status, answer[:300], broken)
    else:
        assert status == 400, (status, answer[:300], broken)
        assert json.loads(answer)["error"]
    assert receiver.proc.alive()


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
    path=st.sampled_from(["/", "/alerts", "/-/healthy", "/-/ready", "/metrics"])
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=50).map(lambda p: "/" + p),
    body=st.binary(max_size=2048) | json_values.map(dumps),
    length=st.none()
    | st.just("exact")
    | st.integers(-5, 1 << 21).map(str)
    | st.sampled_from(["+5", "0x5", "-1", "1_0", "5 ", "1e3", "99999999999999999999999", "\xb2", "\xb9\xb2"])
    | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=12),
)
def test_arbitrary_requests_never_crash_it(receiver: Receiver, method: str, path: str, body: bytes, length) -> None:
    declared = str(len(body)) if length == "exact" else length
    # A client that declares more than it sends and stops: the receiver gets EOF and hangs up.
    short = declared is not None and declared.isdecimal() and int(declared) > len(body)
    status, answer = receiver.request(http(method, path, body, declared), half_close=short)
    if short and method == "POST" and int(declared) <= (1 << 20):
        assert status in (None, 408), status  # only the POST handler reads a body
    elif status == 200:
        assert method in ("GET", "POST"), (method, status)
    else:
        check_refusal(status, answer)
    assert receiver.proc.alive()


def test_lone_surrogates_get_an_answer(receiver: Receiver) -> None:
    body = dumps({"alerts": [{"status": "firing", "labels": {"alertname": "x\ud800"}, "annotations": {}}]})
    status, _ = receiver.request(http("POST", "/", body, str(len(body))))
    assert status in (200, 400)


def test_non_ascii_digits_in_content_length(receiver: Receiver) -> None:
    status, answer = receiver.request(http("POST", "/", b"{}", "\xb2"), half_close=True)
    check_refusal(status, answer)


def test_the_file_holds_only_valid_records(receiver: Receiver, report: Report) -> None:
    lines = receiver.file.read_text(encoding="utf-8", errors="strict").splitlines() if receiver.file.exists() else []
    for line in lines:
        record = json.loads(line)
        assert payload_problem(record["payload"]) is None
    # A handler thread that raised would leave a traceback here even though the process lives on.
    log = receiver.proc.log()
    assert "Traceback" not in log, log[-3000:]
    report.observed(
        f"{3 * EXAMPLES} fuzzed requests: receiver alive, {len(lines)} records stored, all valid; no traceback"
    )
