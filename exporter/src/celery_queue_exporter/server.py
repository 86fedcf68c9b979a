"""HTTP endpoint: /metrics (Prometheus text) for the default broker, /probe?target=NAME for the
brokers of the config file's `targets:` (probe.py), and a small landing page at /; optionally over
TLS and behind basic auth (web_config.py)."""

from __future__ import annotations

import html
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from celery_queue_exporter.exposition import CONTENT_TYPE
from celery_queue_exporter.web_config import WebConfig

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the client must fix (e.g. an unknown /probe target): 400 with this one-line message."""


def landing_page(broker: str | None, version: str, targets: Sequence[tuple[str, str]] = ()) -> bytes:
    """`broker`: the default broker of /metrics (None: /metrics has the process' own metrics only);
    `targets`: (name, redacted broker URL) of each /probe target."""
    default = f"<p>Broker: {html.escape(broker)}</p>\n" if broker is not None else ""
    probes = "".join(
        f'<li><a href="/probe?target={html.escape(name)}">{html.escape(name)}</a>: {html.escape(url)}</li>\n'
        for name, url in targets
    )
    probes = f"<p>Targets of /probe?target=NAME:</p>\n<ul>\n{probes}</ul>\n" if probes else ""
    return f"""<!doctype html>
<html><head><title>celery-queue-exporter</title></head>
<body><h1>celery-queue-exporter {html.escape(version)}</h1>
{default}<p><a href="/metrics">Metrics</a></p>
{probes}</body></html>
""".encode()


class MetricsServer:
    def __init__(
        self,
        address: str,
        port: int,
        metrics: Callable[[], bytes],
        landing: bytes,
        web: WebConfig | None = None,
        probe: Callable[[str], bytes] | None = None,
    ) -> None:
        """`probe(query string)` serves /probe and raises BadRequest for a query it refuses."""
        handler = _make_handler(metrics, landing, web, probe)
        server_class = _IPv6Server if ":" in address else _Server
        self.httpd = server_class((address, port), handler)
        self.httpd.daemon_threads = True
        if web is not None and web.tls is not None:
            # The handshake happens in each request's own thread (Handler.setup), so a slow or
            # broken client cannot hold up accepting the next connection.
            self.httpd.socket = web.tls.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: Prometheus probing many targets of this one
    # process at once overflowed it, and each dropped connection waited a second for its SYN's
    # retransmission (20 targets at once: 1.2 s instead of 0.2 s, exporter/bench/bench_targets.py).
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        # a client that drops the connection or fails the TLS handshake: not our error
        log.debug("connection from %s failed", client_address, exc_info=True)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _make_handler(
    metrics: Callable[[], bytes], landing: bytes, web: WebConfig | None, probe: Callable[[str], bytes] | None
) -> type[BaseHTTPRequestHandler]:
    tls = web is not None and web.tls is not None
    auth = web.auth if web is not None else None

    class Handler(BaseHTTPRequestHandler):
        server_version = "celery-queue-exporter"
        timeout = 30  # seconds a client may take per read, the TLS handshake included

        def setup(self) -> None:
            super().setup()
            if tls:
                self.request.do_handshake()

        def do_GET(self) -> None:
            if auth is not None and not auth.check(self.headers.get("Authorization")):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="celery-queue-exporter"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                self._scrape(metrics)
            elif path == "/probe" and probe is not None:
                self._scrape(lambda: probe(query))
            elif path == "/":
                self._send(200, landing, "text/html; charset=utf-8")
            else:
                where = "/metrics and /probe?target=NAME" if probe is not None else "/metrics"
                self._send(404, f"not found; metrics are at {where}\n".encode(), "text/plain; charset=utf-8")

        def _scrape(self, exposition: Callable[[], bytes]) -> None:
            try:
                body = exposition()
            except BadRequest as exc:
                self._send(400, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                return
            except Exception:
                log.exception("scrape failed")
                self._send(500, b"scrape failed, see the exporter's log\n", "text/plain; charset=utf-8")
                return
            self._send(200, body, CONTENT_TYPE)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
