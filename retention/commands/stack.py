"""`retention stack up|down|status`: the local services, through scripts/stack.sh."""

from __future__ import annotations

from typing import Annotated

import typer

from retention.commands.common import run_stack

stack_app = typer.Typer(help="Install, start and stop the local Kafka, Redis and Prometheus.")


@stack_app.command("up")
def stack_up() -> None:
    """Install what is missing, start Kafka, Redis and Prometheus, wait until ready."""
    raise typer.Exit(run_stack("up"))


@stack_app.command("down")
def stack_down(
    purge: Annotated[bool, typer.Option(help="Also delete the stack's data.")] = False,
) -> None:
    """Stop only the services this project started."""
    raise typer.Exit(run_stack("down", *(["--purge"] if purge else [])))


@stack_app.command("status")
def stack_status() -> None:
    """Show whether each service runs and is ready (exit 3 when one is not)."""
    raise typer.Exit(run_stack("status"))
