"""`retention exporter`: serve the metrics, but only over state built under these settings."""

from __future__ import annotations

import asyncio
import logging

import typer
from rich.markup import escape

from core.errors import EXIT_UNREACHABLE, EXIT_USAGE
from core.settings import Settings
from retention.commands.common import console, load_settings


def exporter() -> None:
    """Serve retention metrics for Prometheus on RETENTION_EXPORTER_HOST:PORT/metrics.

    With RETENTION_EXPORTER_WEB_CONFIG_FILE (exporter-toolkit format) over TLS and/or
    behind basic auth; a file that cannot be used stops the start with exit code 2.
    """
    from metrics.exporter import serve
    from metrics.webconfig import WebConfigError, load_web_config

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        web = load_web_config(settings.exporter_web_config_file)
    except WebConfigError as exc:
        console.print(f"[red]RETENTION_EXPORTER_WEB_CONFIG_FILE refused:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    _refuse_foreign_state(settings)
    auth = " with basic auth" if web.auth else ""
    console.print(
        f"exporter on {web.scheme}://{settings.exporter_host}:{settings.exporter_port}/metrics"
        f"{auth} (namespace {settings.namespace})"
    )
    try:
        serve(settings, web=web)
    except OSError as exc:
        console.print(f"[red]cannot listen on port {settings.exporter_port}:[/red] {exc}")
        raise typer.Exit(1) from None


def _refuse_foreign_state(settings: Settings) -> None:
    """Exit 2 when the state was built under other settings (or Redis evicts keys): the
    exporter would read numbers that mean something else; and when Redis answers, but
    not as RETENTION_REDIS_URL says it is (a cluster URL naming a standalone server)."""
    from core.redis_client import (
        REDIS_ERRORS,
        async_client,
        describe_failure,
        is_outage,
        where_text,
    )
    from streams.guard import StateRefused, check_state

    async def check() -> None:
        redis = async_client(settings, timeout=30)
        try:
            await check_state(redis, settings, record=False)
        finally:
            await redis.aclose()

    try:
        asyncio.run(check())
    except StateRefused as exc:
        console.print(f"[red]refusing to start:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except REDIS_ERRORS as exc:
        failure = describe_failure(settings, exc)
        if failure.refused:
            console.print(f"[red]refusing to start:[/red] {escape(failure.message)}")
            raise typer.Exit(EXIT_UNREACHABLE) from None
        where = where_text(settings)
        if not is_outage(exc):
            console.print(f"[red]refusing to start:[/red] Redis ({where}): {escape(str(exc))}")
            raise typer.Exit(EXIT_USAGE) from None
        console.print(f"[yellow]Redis ({where}) not reachable yet ({exc}); serving anyway[/yellow]")
