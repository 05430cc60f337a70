"""`retention worker`: the stream processor."""

from __future__ import annotations

from typing import Annotated

import typer

from retention.commands.common import load_settings


def worker(
    loglevel: Annotated[str, typer.Option(help="Log level: debug, info, warning.")] = "info",
) -> None:
    """Consume the events topic and keep per-customer state and aggregates in Redis."""
    from streams.app import run_worker

    run_worker(load_settings(), loglevel=loglevel)
