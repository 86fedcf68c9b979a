"""Redis clients from Celery broker URLs, and URLs made safe to log (no passwords)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SCHEMES = ("redis", "rediss", "unix", "redis+socket", "sentinel")


class BrokerUrlError(ValueError):
    pass


def redact_url(text: str) -> str:
    """The URL(s) in `text` with every password replaced by ***, for logs, errors and metrics.

    The credentials end at the LAST '@' before the path, as urlsplit (and so redis-py) reads
    them: a password may hold '@' or ';'. Each `scheme://` starts a URL, which also covers
    Celery's `sentinel://...;sentinel://...` lists."""
    text = re.sub(r"(?<=://)([^/?#\s]*)@", _redact_userinfo, text)
    return re.sub(r"(?i)([?&]password=)[^&\s]*", r"\1***", text)


def _redact_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match.group(1).partition(":")  # the user name ends at the first ':'

    return f"{user}:***@" if colon else "***@"  # no colon: redis-py may take it as a password


def _db_from_path(path: str, url: str) -> int:
    path = path.strip("/")
    if not path:
        return 0
    try:
        return int(path)
    except ValueError:
        raise BrokerUrlError(f"bad database number {path!r} in {redact_url(url)}") from None


def make_client(url: str, timeout: float, sentinel_master: str | None = None) -> redis.Redis:
    """A redis-py client for a Celery broker URL, every socket operation bounded by `timeout`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise BrokerUrlError(
            f"unsupported broker URL scheme {scheme!r} in {redact_url(url)} (expected one of {', '.join(SCHEMES)})"
        )
    common = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        "client_name": "celery-queue-exporter",
        # A scrape must answer within its timeout: no silent retries that multiply it.
        "retry": Retry(NoBackoff(), 0),
        "encoding_errors": "surrogateescape",
    }
    if scheme == "sentinel":
        return _sentinel_client(url, timeout, sentinel_master, common)
    if scheme == "redis+socket":
        url = "unix" + url[len("redis+socket") :]
    url, extra = _celery_query_to_redis_py(url)
    try:
        return redis.Redis.from_url(url, **common, **extra)
    except (ValueError, TypeError) as exc:
        raise BrokerUrlError(f"bad broker URL {redact_url(url)}: {exc}") from None


# Query arguments of Celery broker URLs that mean something to redis-py; others are Celery's own.
_PASSED_QUERY = {"db", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_ca_path"}
_CERT_REQS = {
    "cert_required": "required",
    "cert_optional": "optional",
    "cert_none": "none",
    "required": "required",
    "optional": "optional",
    "none": "none",
}


def _celery_query_to_redis_py(url: str) -> tuple[str, dict]:
    """Celery writes ?ssl_cert_reqs=CERT_REQUIRED and, for sockets, ?virtual_host=N as the db."""
    split = urlsplit(url)
    kept: list[tuple[str, str]] = []
    extra: dict = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        if name == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise BrokerUrlError(f"bad ssl_cert_reqs={value!r} in {redact_url(url)}")
            extra["ssl_cert_reqs"] = _CERT_REQS[value.lower()]
        elif name == "virtual_host" and value.isdigit():
            kept.append(("db", value))
        elif name in _PASSED_QUERY:
            kept.append((name, value))
    if split.scheme == "unix" and not any(k == "db" for k, _ in kept):
        # unix:///path/redis.sock/1 is how some spell the db of a socket
        match = re.fullmatch(r"(.*\.sock)/(\d+)", split.path)
        if match:
            split = split._replace(path=match.group(1))
            kept.append(("db", match.group(2)))
    # urlunsplit() would drop the empty host of unix:///path
    query = urlencode(kept)
    return f"{split.scheme}://{split.netloc}{split.path}" + (f"?{query}" if query else ""), extra


def _sentinel_client(url: str, timeout: float, master: str | None, common: dict) -> redis.Redis:
    if not master:
        raise BrokerUrlError("sentinel:// broker URLs need --sentinel-master (kombu's master_name)")
    hosts: list[tuple[str, int]] = []
    password = username = None
    db = 0
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        split = urlsplit(part)
        if split.scheme.lower() != "sentinel" or not split.hostname:
            raise BrokerUrlError(f"bad sentinel URL part {redact_url(part)}")
        try:
            hosts.append((split.hostname, split.port or 26379))
        except ValueError:
            raise BrokerUrlError(f"bad port in {redact_url(part)}") from None
        if split.password:
            password = unquote(split.password)
            username = unquote(split.username) if split.username else None
        db = _db_from_path(split.path, part) if split.path.strip("/") else db
    # As in kombu, the URL's password is the master's; sentinels themselves are asked without one.
    sentinel = Sentinel(hosts, socket_timeout=timeout, socket_connect_timeout=timeout)
    return sentinel.master_for(
        master,
        db=db,
        password=password,
        username=username,
        **{k: v for k, v in common.items() if k != "health_check_interval"},
    )
