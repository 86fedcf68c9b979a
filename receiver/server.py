"""HTTP side of the receiver: Alertmanager's webhook POSTs in, readable lines out."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from receiver.lines import payload_lines
from receiver.store import PayloadStore

MAX_BODY_BYTES = 1 << 20  # Alertmanager's payloads are small; anything bigger is not for us.


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: PayloadStore) -> None:
        super().__init__(address, Handler)
        self.store = store


class Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    server_version = "celery-alert-receiver"

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
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, {"error": "Content-Length required"})
            return
        if length > MAX_BODY_BYTES:
            self._reply(413, {"error": f"payload over {MAX_BODY_BYTES} bytes"})
            self.close_connection = True
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._reply(400, {"error": "body is not JSON"})
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            self._reply(400, {"error": "not an Alertmanager webhook payload (no alerts list)"})
            return
        received_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.server.store.append({"received_at": received_at, "payload": payload})
        for line in payload_lines(payload, received_at):
            print(line, flush=True)
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
