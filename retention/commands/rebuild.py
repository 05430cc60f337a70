"""`retention rebuild`: replay the events topic into a cleared namespace."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated

import typer

from core.errors import EXIT_USAGE
from retention.commands.common import command_errors, console, load_settings

EPILOG = (
    "Exit codes: 0 rebuilt; 2 workers still running, an evicting Redis or bad "
    "settings; 3 Kafka or Redis unreachable."
)


def rebuild(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Clear the namespace without asking.")
    ] = False,
) -> None:
    """Rebuild the state from the events topic under the current settings.

    Stop every worker first. This clears every key of RETENTION_NAMESPACE, records the
    current settings with the state, and consumes RETENTION_EVENTS_TOPIC from its first
    offset until the end it had when the command started, with a progress bar. Start the
    workers again afterwards; they continue from where the rebuild stopped. Lifecycle
    changes are published again as the history is replayed.
    """
    from retention.rebuild import rebuild as run_rebuild

    settings = load_settings()
    if not yes:
        if not sys.stdin.isatty():
            console.print("[red]refusing to clear the namespace without --yes[/red]")
            raise typer.Exit(EXIT_USAGE)
        typer.confirm(
            f"Delete every key of namespace {settings.namespace!r} and rebuild it from "
            f"{settings.events_topic!r}?",
            abort=True,
        )
    with command_errors():
        started = time.monotonic()
        records = asyncio.run(run_rebuild(settings, console))
    console.print(
        f"rebuilt namespace {settings.namespace!r} from {records} records "
        f"in {time.monotonic() - started:.1f} s"
    )
