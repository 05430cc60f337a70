"""Serve the retention metrics on /metrics until interrupted."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, start_http_server
from redis import Redis

from metrics.aggregates import AggregateReader
from metrics.collector import RetentionCollector
from retention.settings import Settings


def build_registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only our collector, so scrapes show retention metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    reader = AggregateReader(Redis.from_url(settings.redis_url), settings)
    registry.register(RetentionCollector(reader, settings))
    return registry


def serve(settings: Settings, stop: threading.Event | None = None) -> None:
    """Block serving metrics; the HTTP server runs in a daemon thread."""
    server, thread = start_http_server(
        settings.exporter_port, addr=settings.exporter_host, registry=build_registry(settings)
    )
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
