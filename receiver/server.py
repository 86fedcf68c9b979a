"""HTTP side of the receiver: Alertmanager's webhook POSTs in, readable lines out."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from receiver.lines import payload_lines
from receiver.store import PayloadStore

MAX_BODY_BYTES = 1 << 20  # Alertmanager's payloads are small; anything bigger is not for us.
READ_TIMEOUT_S = 10  # a client that stops sending mid-body frees its thread after this
STATUSES = ("firing", "resolved")


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: PayloadStore) -> None:
        super().__init__(address, Handler)
        self.store = store


def payload_problem(payload: Any) -> str | None:
    """Why `payload` is not an Alertmanager webhook payload, or None when it is one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        return "not an Alertmanager webhook payload (no alerts list)"
    for i, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict):
            return f"alerts[{i}] is not an object"
        if alert.get("status") not in STATUSES:
            return f"alerts[{i}].status must be firing or resolved"
        for key in ("labels", "annotations"):
            value = alert.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                return f"alerts[{i}].{key} must map names to strings"
    return None


class Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    server_version = "celery-alert-receiver"
    timeout = READ_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per alert is the output; access logs would drown it

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/-/healthy", "/-/ready"):
            self._reply(200, {"status": "ok"})
        elif self.path == "/alerts":
            self._reply(200, {"payloads": self.server.store.read_all()})
        else:
            self._reply(404, {"error": "not found; POST Alertmanager webhooks to /"})

    def do_POST(self) -> None:
        # http.server strips the whitespace before a field value but keeps the one after (RFC 9110: neither counts)
        raw_length = self.headers.get("Content-Length", "").strip(" \t")
        if not (raw_length.isascii() and raw_length.isdigit()):  # '²'.isdigit() is True
            self.close_connection = True
            self._reply(411 if not raw_length else 400, {"error": "a Content-Length (bytes) is required"})
            return
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413, {"error": f"payload over {MAX_BODY_BYTES} bytes"})
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._reply(408, {"error": f"body not received within {READ_TIMEOUT_S}s"})
            return
        if len(body) < length:
            self.close_connection = True
            return  # the client went away mid-body: nobody to answer
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            self._reply(400, {"error": "body is not JSON"})
            return
        problem = payload_problem(payload)
        if problem:
            self._reply(400, {"error": problem})
            return
        now = time.time()
        received_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.server.store.locked():
            try:
                self.server.store.append({"received_at": received_at, "received_unix": now, "payload": payload})
            except OSError as exc:  # disk full, file removed read-only...: Alertmanager retries later
                print(f"receiver: cannot write {self.server.store.path}: {exc}", file=sys.stderr, flush=True)
                self._reply(500, {"error": "cannot store the payload"})
                return
            for line in payload_lines(payload, received_at):
                # JSON may carry lone surrogates, which stdout cannot encode: show them escaped
                print(line.encode("utf-8", "backslashreplace").decode("utf-8"), flush=True)
        self._reply(200, {"status": "ok"})


def serve(address: str, port: int, store: PayloadStore) -> None:
    server = ReceiverServer((address, port), store)
    print(
        f"receiver listening on http://{address}:{server.server_port}/, writing {store.path}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
