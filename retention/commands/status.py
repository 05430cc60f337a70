"""`retention status`: every part of the pipeline on one screen."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from core.errors import EXIT_UNREACHABLE
from retention.commands.common import load_settings, out

EPILOG = "Exit codes: 0 Kafka, Redis and the exporter are up; 3 one of them is not."


def status(
    exporter: Annotated[
        str | None, typer.Option(help="The exporter's /metrics URL; default from settings.")
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus base URL (optional part).")
    ] = None,
    sample_seconds: Annotated[
        float, typer.Option("--sample", min=0.1, help="Seconds between the two offset looks.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON, for scripts.")] = False,
) -> None:
    """Broker, Redis, worker group (lag, events/s), exporter and watermark, on one screen."""
    from retention.status import collect, table

    settings = load_settings()
    result = collect(settings, exporter, prometheus or settings.prometheus_url, sample_seconds)
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        out.print(table(result))
    if not result.ok:
        raise typer.Exit(EXIT_UNREACHABLE)
