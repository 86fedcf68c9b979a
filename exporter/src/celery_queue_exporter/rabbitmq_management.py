"""RabbitMQ's management HTTP API: its address from a Celery broker URL, and a keep-alive client.

The broker URL is read as kombu reads it: `amqp://user:password@host:5672/vhost`, the vhost
URL-quoted (`%2F` or Celery's `//` for "/", nothing for the default "/"), guest/guest when no
credentials are given. The management API listens on 15672 (15671 for amqps://) of the same
host unless `--management-url` says otherwise; TLS options are the query arguments Celery's
broker URLs use (ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from celery_queue_exporter.connection import BrokerUrlError, redact_url

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "pyamqps")
TLS_SCHEMES = ("amqps", "pyamqps")
DEFAULT_MANAGEMENT_PORT = 15672
DEFAULT_MANAGEMENT_TLS_PORT = 15671
MAX_BODY = 256 * 1024 * 1024  # a reply larger than this is not a queue list

_CERT_REQS = {
    "cert_required": ssl.CERT_REQUIRED,
    "cert_optional": ssl.CERT_OPTIONAL,
    "cert_none": ssl.CERT_NONE,
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
_TLS_QUERY = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}


def is_amqp_url(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0].strip()).scheme.lower() in AMQP_SCHEMES


@dataclass(frozen=True)
class ManagementTarget:
    """Where the management API is, whom to log in as, and which vhost's queues to read."""

    scheme: str  # http or https
    host: str
    port: int
    prefix: str  # management.path_prefix behind a proxy, "" or "/rabbitmq"
    user: str
    password: str
    vhost: str
    tls: tuple[tuple[str, str], ...] = ()  # ssl_* query arguments

    @property
    def display(self) -> str:
        """The base URL for logs: no credentials in it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    def queues_path(self) -> str:
        return f"{self.prefix}/api/queues/{quote(self.vhost, safe='')}"


def _vhost_of(path: str) -> str:
    # As kombu: the path without its first "/", unquoted; empty means the default vhost "/".
    vhost = unquote(path[1:] if path.startswith("/") else path)
    return vhost or "/"


def _port_of(split: Any, url: str) -> int | None:
    try:
        return split.port
    except ValueError:
        raise BrokerUrlError(f"bad port in {redact_url(url)}") from None


def management_target(broker_url: str, management_url: str | None = None) -> ManagementTarget:
    """The management API of a Celery AMQP broker URL; `management_url` overrides its address,
    and its credentials, when it carries some, those of the broker URL."""
    first = broker_url.split(";", 1)[0].strip()  # Celery's failover list: any node lists the queues
    broker = urlsplit(first)
    if broker.scheme.lower() not in AMQP_SCHEMES:
        raise BrokerUrlError(
            f"unsupported broker URL scheme {broker.scheme!r} in {redact_url(first)} "
            f"(expected one of {', '.join(AMQP_SCHEMES)})"
        )
    if not broker.hostname:
        raise BrokerUrlError(f"no host in {redact_url(first)}")
    _port_of(broker, first)
    user = unquote(broker.username) if broker.username else "guest"
    password = unquote(broker.password) if broker.password is not None else "guest"
    vhost = _vhost_of(broker.path)
    tls_query = [(k, v) for k, v in parse_qsl(broker.query, keep_blank_values=True) if k in _TLS_QUERY]
    if not management_url:
        tls = broker.scheme.lower() in TLS_SCHEMES
        return ManagementTarget(
            scheme="https" if tls else "http",
            host=broker.hostname,
            port=DEFAULT_MANAGEMENT_TLS_PORT if tls else DEFAULT_MANAGEMENT_PORT,
            prefix="",
            user=user,
            password=password,
            vhost=vhost,
            tls=_checked_tls(tls_query, first) if tls else (),
        )
    split = urlsplit(management_url.strip())
    scheme = split.scheme.lower()
    if scheme not in ("http", "https") or not split.hostname:
        raise BrokerUrlError(
            f"--management-url must be http(s)://host[:port][/prefix], not {redact_url(management_url)}"
        )
    port = _port_of(split, management_url) or (443 if scheme == "https" else 80)
    if split.username:
        user = unquote(split.username)
        password = unquote(split.password or "")
    query = [(k, v) for k, v in parse_qsl(split.query, keep_blank_values=True) if k in _TLS_QUERY]
    return ManagementTarget(
        scheme=scheme,
        host=split.hostname,
        port=port,
        prefix=split.path.rstrip("/"),
        user=user,
        password=password,
        vhost=vhost,
        tls=_checked_tls(query or tls_query, management_url) if scheme == "https" else (),
    )


def _checked_tls(query: list[tuple[str, str]], url: str) -> tuple[tuple[str, str], ...]:
    for name, value in query:
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            raise BrokerUrlError(f"bad ssl_cert_reqs={value!r} in {redact_url(url)}")
        if name == "ssl_check_hostname" and value.lower() not in ("true", "false", "1", "0"):
            raise BrokerUrlError(f"bad ssl_check_hostname={value!r} in {redact_url(url)}")
    return tuple(query)


def ssl_context(tls: tuple[tuple[str, str], ...]) -> ssl.SSLContext:
    options = dict(tls)
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs") or None)
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile") or None)
    reqs = _CERT_REQS[options.get("ssl_cert_reqs", "required").lower()]
    check = options.get("ssl_check_hostname", "true").lower() in ("true", "1")
    context.check_hostname = check and reqs != ssl.CERT_NONE
    context.verify_mode = reqs
    return context


class ManagementError(Exception):
    """A request the management API did not answer with usable JSON; `reason` labels the error metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ManagementClient:
    """GETs JSON from the management API over one kept-alive connection, each bounded by `timeout`."""

    def __init__(self, target: ManagementTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        token = base64.b64encode(f"{target.user}:{target.password}".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": "celery-queue-exporter",
        }
        self._context = ssl_context(target.tls) if target.scheme == "https" else None
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            t = self.target
            if self._context is not None:
                self._conn = http.client.HTTPSConnection(t.host, t.port, timeout=self.timeout, context=self._context)
            else:
                self._conn = http.client.HTTPConnection(t.host, t.port, timeout=self.timeout)
        return self._conn

    def get_json(self, path: str) -> Any:
        """The decoded reply to GET `path` (absolute, query included); ManagementError otherwise."""
        reused = self._conn is not None
        try:
            status, body = self._get(path)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if not reused:
                raise self._unreachable(exc) from None
            try:  # the server may have closed the idle kept-alive connection: one fresh try
                status, body = self._get(path)
            except (OSError, http.client.HTTPException) as exc2:
                self.close()
                raise self._unreachable(exc2) from None
        where = self.target.display
        if status == 200:
            try:
                return json.loads(body)
            except ValueError:
                raise ManagementError(
                    "malformed_reply", f"the management API at {where} answered something that is not JSON"
                ) from None
        detail = _error_detail(body)
        if status == 401:
            raise ManagementError(
                "rabbitmq_auth",
                f"the management API at {where} refused user {self.target.user!r} (HTTP 401{detail}): wrong "
                f"credentials, no monitoring tag, or no permission entry on vhost {self.target.vhost!r}",
            )
        if status == 404:
            raise ManagementError(
                "rabbitmq_not_found",
                f"the management API at {where} has no vhost {self.target.vhost!r} (HTTP 404{detail})",
            )
        raise ManagementError("rabbitmq_http", f"the management API at {where} answered HTTP {status}{detail}")

    def _get(self, path: str) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("GET", path, headers=self._headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            self.close()
            raise http.client.HTTPException(f"reply larger than {MAX_BODY} bytes")
        if resp.will_close:
            self.close()
        return resp.status, body

    def _unreachable(self, exc: BaseException) -> ManagementError:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ManagementError(
            "rabbitmq_unreachable",
            f"cannot reach the RabbitMQ management API at {self.target.display} ({text}); "
            "is the rabbitmq_management plugin enabled and --management-url right?",
        )


def _error_detail(body: bytes) -> str:
    """RabbitMQ's own reason from an error reply, short and on one line."""
    try:
        reply = json.loads(body)
    except ValueError:
        return ""
    if isinstance(reply, dict) and isinstance(reply.get("reason"), str):
        return ": " + " ".join(reply["reason"].split())[:200]
    return ""
