"""Serve the retention metrics on /metrics until interrupted.

The usual scrape (Prometheus text or OpenMetrics 1.0.0, optionally gzipped) is
written by metrics/exposition.py from the collector's families; anything else (a
`name[]` filter, another format or escaping, OPTIONS) is left to prometheus-client's
own WSGI app over the same collector, so every request prometheus-client answered
is still answered, with the same bytes.

The HTTP server (metrics/server.py) serves at most RETENTION_EXPORTER_THREADS requests
at once, each under a deadline, behind the TLS and basic auth of the web config file
(metrics/webconfig.py); concurrent scrapes share one collection (metrics/shared.py).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from core.redis_client import REDIS_ERRORS, is_outage, sync_client, where_text
from core.redis_types import SyncRedis
from core.settings import Settings
from metrics.aggregates import AggregateReader
from metrics.collector import RetentionCollector
from metrics.exposition import render
from metrics.server import BoundedServer, WSGIApp, make_bounded_server
from metrics.webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)
# A fast level: at level 9 (prometheus-client's) gzip took ~50 ms of a 2 MB scrape.
GZIP_LEVEL = 1


def build_collector(settings: Settings) -> RetentionCollector:
    return RetentionCollector(AggregateReader(connect(settings), settings), settings)


def connect(settings: Settings) -> SyncRedis:
    """The scrapes' Redis client. It gives up on a silent server and caps its connections,
    so a slow Redis or a flood of scrapes can neither hang the exporter nor fill Redis's
    maxclients that the worker needs. A cluster client reads the slot map when it is made,
    so an exporter started before its cluster waits for it, with backoff, as the worker does."""
    delay = 0.5
    while True:
        try:
            return sync_client(
                settings,
                timeout=settings.exporter_redis_timeout_seconds,
                connect_timeout=settings.exporter_redis_timeout_seconds,
                max_connections=settings.exporter_redis_max_connections,
            )
        except REDIS_ERRORS as exc:
            if not is_outage(exc):
                raise
            where = where_text(settings)
            log.warning("Redis (%s) not reachable (%s); retrying in %.1f s", where, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def build_registry(
    settings: Settings, collector: RetentionCollector | None = None
) -> CollectorRegistry:
    """A registry holding only our collector, so scrapes show retention metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector or build_collector(settings))
    return registry


def metrics_app(collector: RetentionCollector, registry: CollectorRegistry) -> WSGIApp:
    """WSGI app: our writer for plain scrapes, prometheus-client's app for the rest."""
    fallback: WSGIApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        openmetrics = _openmetrics(content_type)
        if (
            openmetrics is None
            or environ["REQUEST_METHOD"] != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
        ):
            return fallback(environ, start_response)
        body = render(collector.families(), openmetrics)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


def serve(
    settings: Settings, stop: threading.Event | None = None, web: WebConfig | None = None
) -> None:
    """Block serving metrics; the HTTP server runs in a daemon thread."""
    collector = build_collector(settings)
    app = metrics_app(collector, build_registry(settings, collector))
    server = make_server(settings, app, web)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_server(settings: Settings, app: WSGIApp, web: WebConfig | None = None) -> BoundedServer:
    """The exporter's server on RETENTION_EXPORTER_HOST:PORT under the web config file."""
    return make_bounded_server(
        settings.exporter_host,
        settings.exporter_port,
        app,
        threads=settings.exporter_threads,
        timeout=settings.exporter_request_timeout_seconds,
        web=web or load_web_config(settings.exporter_web_config_file),
    )


def _openmetrics(content_type: str) -> bool | None:
    """True for OpenMetrics 1.0.0, False for Prometheus text, None for a format (or a
    name escaping other than the identity for our names) that we leave alone."""
    kind, *params = (part.strip() for part in content_type.split(";"))
    options = dict(param.partition("=")[::2] for param in params)
    if options.get("escaping", "underscores") not in ("underscores", "allow-utf-8"):
        return None
    if kind == "text/plain" and options.get("version") in ("0.0.4", "1.0.0"):
        return False
    if kind == "application/openmetrics-text" and options.get("version") == "1.0.0":
        return True
    return None
