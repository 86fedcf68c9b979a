"""TLS and basic auth for /metrics, configured like Prometheus' own exporters (exporter-toolkit's
web configuration file), so one file format serves node_exporter, redis_exporter and this one:

    tls_server_config:
      cert_file: /etc/exporter/tls.crt
      key_file: /etc/exporter/tls.key
    basic_auth_users:
      prometheus: $2b$12$...   # bcrypt hash, e.g. htpasswd -nBC 12 "" | tr -d ':\\n'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {"tls_server_config", "basic_auth_users"}
KNOWN_TLS_KEYS = {"cert_file", "key_file"}


class WebConfigError(ValueError):
    """The web configuration file cannot be used; the message is one line for the user."""


@dataclass
class BasicAuth:
    users: dict[str, bytes]  # user -> bcrypt hash
    # bcrypt is slow on purpose (~0.1-0.3 s): remember which credentials were right, as
    # exporter-toolkit does, keyed by a keyed digest so the cache holds no password.
    _good: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key: bytes = field(default_factory=lambda: hashlib.sha256(str(id(object())).encode()).digest())

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        token = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if token in self._good:
                return True
        import bcrypt

        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._good.add(token)
        return True


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None
    auth: BasicAuth | None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def load_web_config(path: str) -> WebConfig:
    try:
        doc: Any = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise WebConfigError(f"cannot read --web-config-file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise WebConfigError(f"--web-config-file {path} is not YAML: {str(exc).splitlines()[0]}") from None
    doc = doc or {}
    if not isinstance(doc, dict) or set(doc) - KNOWN_KEYS:
        raise WebConfigError(f"--web-config-file {path}: expected only the keys {', '.join(sorted(KNOWN_KEYS))}")
    return WebConfig(tls=_tls(doc.get("tls_server_config"), path), auth=_auth(doc.get("basic_auth_users"), path))


def _tls(section: Any, path: str) -> ssl.SSLContext | None:
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) - KNOWN_TLS_KEYS or not section.get("cert_file"):
        raise WebConfigError(f"--web-config-file {path}: tls_server_config needs cert_file and key_file, nothing else")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(section["cert_file"], section.get("key_file"))
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"--web-config-file {path}: cannot load the certificate or key: {exc}") from None
    return context


def _auth(section: Any, path: str) -> BasicAuth | None:
    if section is None:
        return None
    if not isinstance(section, dict) or not section:
        raise WebConfigError(f"--web-config-file {path}: basic_auth_users must map user names to bcrypt hashes")
    try:
        import bcrypt  # noqa: F401 - checked here so a missing package is a startup error, not a 500
    except ImportError:
        raise WebConfigError(
            "basic_auth_users needs the bcrypt package: pip install 'celery-queue-exporter[web]'"
        ) from None
    users = {}
    for user, hashed in section.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"--web-config-file {path}: the password of {user!r} is not a bcrypt hash")
        users[str(user)] = hashed.encode()
    return BasicAuth(users)
