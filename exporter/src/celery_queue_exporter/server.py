"""HTTP endpoint: /metrics (Prometheus text) and a small landing page at /."""

from __future__ import annotations

import html
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from celery_queue_exporter.exposition import CONTENT_TYPE

log = logging.getLogger(__name__)


def landing_page(broker: str, version: str) -> bytes:
    return f"""<!doctype html>
<html><head><title>celery-queue-exporter</title></head>
<body><h1>celery-queue-exporter {html.escape(version)}</h1>
<p>Broker: {html.escape(broker)}</p>
<p><a href="/metrics">Metrics</a></p>
</body></html>
""".encode()


class MetricsServer:
    def __init__(self, address: str, port: int, metrics: Callable[[], bytes], landing: bytes) -> None:
        handler = _make_handler(metrics, landing)
        server_class = _IPv6Server if ":" in address else ThreadingHTTPServer
        self.httpd = server_class((address, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(metrics: Callable[[], bytes], landing: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "celery-queue-exporter"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    body = metrics()
                except Exception:
                    log.exception("scrape failed")
                    self._send(500, b"scrape failed, see the exporter's log\n", "text/plain; charset=utf-8")
                    return
                self._send(200, body, CONTENT_TYPE)
            elif path == "/":
                self._send(200, landing, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found; metrics are at /metrics\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
