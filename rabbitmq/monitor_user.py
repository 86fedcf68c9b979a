"""The exporter's RabbitMQ user, created or updated through the management API: the `monitoring`
tag, and on the vhost only the permissions Celery's inspect needs (celery_worker_up); `--no-inspect`
gives none at all (`^$`). docker-compose.rabbitmq.yml runs it once before the exporter starts.

    RABBITMQ_ADMIN_URL=http://admin:PASS@rabbitmq:15672 RABBITMQ_MONITOR_PASSWORD=... \\
        python -m rabbitmq.monitor_user --user monitor --vhost /
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit

from celery_queue_exporter.consumers import INSPECT_PERMISSIONS_AMQP

NOTHING = {"configure": "^$", "write": "^$", "read": "^$"}


class Failed(Exception):
    pass


def _put(admin_url: str, path: str, body: dict[str, object]) -> None:
    split = urlsplit(admin_url)
    base = f"{split.scheme}://{split.hostname}:{split.port or 15672}{split.path.rstrip('/')}"
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="PUT")
    token = base64.b64encode(f"{unquote(split.username or '')}:{unquote(split.password or '')}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        raise Failed(f"PUT {path}: HTTP {exc.code} {exc.read().decode(errors='replace')[:200]}") from None
    except OSError as exc:
        raise Failed(f"cannot reach the management API at {base}: {exc}") from None


def ensure(admin_url: str, user: str, password: str, vhost: str, inspect: bool = True) -> None:
    """Create or update `user` with `password`, the monitoring tag and its permissions on `vhost`."""
    _put(admin_url, f"/api/users/{quote(user, safe='')}", {"password": password, "tags": "monitoring"})
    permissions = INSPECT_PERMISSIONS_AMQP if inspect else NOTHING
    _put(admin_url, f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}", permissions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rabbitmq.monitor_user", description=__doc__.split("\n")[0])
    parser.add_argument("--user", default="monitor")
    parser.add_argument("--vhost", default="/")
    parser.add_argument("--no-inspect", action="store_true", help="no permission at all: no celery_worker_up")
    args = parser.parse_args(argv)
    admin_url = os.environ.get("RABBITMQ_ADMIN_URL", "")
    password = os.environ.get("RABBITMQ_MONITOR_PASSWORD", "")
    if not admin_url or not password:
        print("rabbitmq.monitor_user: set RABBITMQ_ADMIN_URL and RABBITMQ_MONITOR_PASSWORD", file=sys.stderr)
        return 2
    try:
        ensure(admin_url, args.user, password, args.vhost, inspect=not args.no_inspect)
    except Failed as exc:
        print(f"rabbitmq.monitor_user: {exc}", file=sys.stderr)
        return 1
    granted = "no" if args.no_inspect else "inspect's"
    print(f"user {args.user!r}: monitoring tag, {granted} permissions on vhost {args.vhost!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
