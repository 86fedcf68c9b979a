"""Command line entry point: resolve the options, open the target, serve /metrics until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client.process_collector import ProcessCollector

from celery_queue_exporter import __version__
from celery_queue_exporter.celery_app import app_queues, load_app
from celery_queue_exporter.config import ConfigError, load_config
from celery_queue_exporter.connection import BrokerUrlError, redact_url
from celery_queue_exporter.server import MetricsServer, landing_page
from celery_queue_exporter.target import Target
from celery_queue_exporter.web_config import WebConfigError, load_web_config

log = logging.getLogger("celery_queue_exporter")
USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(f"celery-queue-exporter {__version__}")
        return 0
    apps: dict[str, Any] = {}

    def options_of_app(ref: str) -> dict[str, Any]:
        from celery_queue_exporter.celery_app import transport_options

        apps[ref] = load_app(ref)
        return transport_options(apps[ref])

    try:
        config = load_config(args, transport_options=options_of_app)
        logging.basicConfig(
            level=config.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        static = list(config.queues)
        if config.app:
            static += app_queues(apps[config.app])
        target = Target.from_config(config, static)
        web = load_web_config(config.web_config_file) if config.web_config_file else None
    except (ConfigError, BrokerUrlError, WebConfigError) as exc:
        print(f"celery-queue-exporter: error: {redact_url(str(exc))}", file=sys.stderr)
        return USAGE_ERROR

    process = ProcessCollector(registry=None)
    try:
        server = MetricsServer(
            config.address,
            config.port,
            lambda: target.exposition(also=[process]),
            landing_page(redact_url(config.broker_url), __version__),
            web,
        )
    except OSError as exc:
        print(
            f"celery-queue-exporter: error: cannot listen on {config.address}:{config.port}: {exc.strerror}",
            file=sys.stderr,
        )
        target.stop()
        return 1

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    target.start()
    log.info(
        "celery-queue-exporter %s serving %s://%s:%d/metrics%s for broker %s (queues: %s)",
        __version__,
        web.scheme if web else "http",
        config.address,
        server.port,
        " (basic auth)" if web and web.auth else "",
        redact_url(config.broker_url),
        ",".join(static) or "discovered from bindings",
    )
    try:
        server.serve_forever()
    finally:
        target.stop()
    log.info("stopped")
    return 0
