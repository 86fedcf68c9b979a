"""Command line entry point: resolve the options, start the reader, serve /metrics until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from celery_queue_exporter import __version__
from celery_queue_exporter.celery_app import app_queues, load_app
from celery_queue_exporter.collector import QueueCollector
from celery_queue_exporter.config import Config, ConfigError, load_config
from celery_queue_exporter.connection import BrokerUrlError, make_client, redact_url
from celery_queue_exporter.consumers import ConsumersReading
from celery_queue_exporter.discovery import QueueSet
from celery_queue_exporter.exposition import render
from celery_queue_exporter.reader import BrokerReader
from celery_queue_exporter.server import MetricsServer, landing_page
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
        client = make_client(config.broker_url, config.redis_timeout, config.sentinel_master)
        web = load_web_config(config.web_config_file) if config.web_config_file else None
    except (ConfigError, BrokerUrlError, WebConfigError) as exc:
        print(f"celery-queue-exporter: error: {redact_url(str(exc))}", file=sys.stderr)
        return USAGE_ERROR

    static = list(config.queues)
    if config.app:
        static += app_queues(apps[config.app])
    collector = build_collector(config, client, static)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(ProcessCollector(registry=None))
    try:
        server = MetricsServer(
            config.address,
            config.port,
            lambda: render(registry.collect()),
            landing_page(redact_url(config.broker_url), __version__),
            web,
        )
    except OSError as exc:
        print(
            f"celery-queue-exporter: error: cannot listen on {config.address}:{config.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if collector.consumers is not None:
        collector.consumers.start()
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
        if collector.consumers is not None:
            collector.consumers.stop()
        client.close()
    log.info("stopped")
    return 0


def build_collector(config: Config, client: Any, static_queues: Sequence[str]) -> QueueCollector:
    layout = config.layout
    queue_set = QueueSet(static_queues, config.queue_grace_period, config.max_queues)
    reader = BrokerReader(
        client,
        layout,
        queue_set,
        scan_count=config.discovery_scan_count,
        message_age=config.message_age,
        time_budget=config.redis_timeout,
    )
    consumers = None
    if config.consumers_interval > 0:
        options: dict[str, Any] = {
            "global_keyprefix": layout.global_keyprefix,
            "sep": layout.sep,
            "priority_steps": list(layout.priority_steps),
        }
        if config.sentinel_master:
            options["master_name"] = config.sentinel_master
        consumers = ConsumersReading(
            config.broker_url,
            config.consumers_interval,
            config.consumers_timeout,
            options,
            worker_grace_period=config.worker_grace_period,
        )
    return QueueCollector(reader, config.visibility_timeout, consumers)
