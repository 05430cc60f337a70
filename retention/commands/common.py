"""What every command shares: the two consoles, settings loading, error-to-exit-code
translation and the local stack script."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from core.errors import CommandError
from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack.sh"

console = Console(stderr=True)  # progress, messages and summaries
out = Console()  # a command's own output: reports, status, JSON


def load_settings() -> Settings:
    """Read RETENTION_* settings, turning a bad value into a clear message and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            # a check across settings (no location) names its variables in the message
            where = [f"RETENTION_{str(error['loc'][0]).upper()}:"] if error["loc"] else []
            console.print("[red]configuration error[/red]", *where, escape(error["msg"]))
        raise typer.Exit(2) from None


@contextmanager
def command_errors() -> Iterator[None]:
    """Turn a CommandError from anywhere below into its message and exit code."""
    try:
        yield
    except CommandError as exc:
        console.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(exc.code) from None


def run_stack(*args: str) -> int:
    """Run scripts/stack.sh, the one place that installs and starts services."""
    return subprocess.call(["bash", str(STACK_SCRIPT), *args])
