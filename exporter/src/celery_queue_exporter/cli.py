"""Command line entry point: resolve the options, open the targets (the default one of /metrics and
those of /probe), serve them until stopped."""

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
from celery_queue_exporter.collectors.health import build_info
from celery_queue_exporter.config import Config, ConfigError, load_config
from celery_queue_exporter.connection import BrokerUrlError, redact_url
from celery_queue_exporter.exposition import Renderer
from celery_queue_exporter.probe import ProbeTargets
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

        def static_queues(of: Config) -> list[str]:
            return [*of.queues, *(app_queues(apps[of.app]) if of.app else ())]

        # With targets configured, an empty broker URL leaves /metrics to the process' own metrics
        # (as redis_exporter's --redis.addr="" does).
        target = None if config.targets and not config.broker_url else Target.from_config(config, static_queues(config))
        probes = ProbeTargets.from_configs(config.targets, static_queues)
        web = load_web_config(config.web_config_file) if config.web_config_file else None
    except (ConfigError, BrokerUrlError, WebConfigError) as exc:
        print(f"celery-queue-exporter: error: {redact_url(str(exc))}", file=sys.stderr)
        return USAGE_ERROR

    process = ProcessCollector(registry=None)
    renderer = Renderer()

    def metrics() -> bytes:
        if target is None:
            return renderer.render([build_info(), *process.collect()])
        return target.exposition(also=[process])

    try:
        server = MetricsServer(
            config.address,
            config.port,
            metrics,
            landing_page(
                redact_url(config.broker_url) if target is not None else None,
                __version__,
                [(name, redact_url(c.broker_url)) for name, c in config.targets.items()],
            ),
            web,
            probes.exposition,
        )
    except OSError as exc:
        print(
            f"celery-queue-exporter: error: cannot listen on {config.address}:{config.port}: {exc.strerror}",
            file=sys.stderr,
        )
        stop_all(target, probes)
        return 1

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if target is not None:
        target.start()
    probes.start()
    base = f"{web.scheme if web else 'http'}://{config.address}:{server.port}"
    if target is not None:
        queues = ",".join(static_queues(config)) or "discovered from bindings"
        served = f"broker {redact_url(config.broker_url)} (queues: {queues})"
    else:
        served = "the exporter process only"
    auth = " (basic auth)" if web and web.auth else ""
    log.info("celery-queue-exporter %s serving %s/metrics%s for %s", __version__, base, auth, served)
    if probes.names:
        log.info("and %s/probe?target=NAME for: %s", base, ", ".join(probes.names))
    try:
        server.serve_forever()
    finally:
        stop_all(target, probes)
    log.info("stopped")
    return 0


def stop_all(target: Target | None, probes: ProbeTargets) -> None:
    if target is not None:
        target.stop()
    probes.stop()
