"""`python -m retention.stack`: the local stack's command line (scripts/stack.sh runs it
after installing packages and jars)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retention.stack import control
from retention.stack.settings import SERVICE_NAMES, StackError, StackSettings

HELP = "\n\n".join(
    [
        "Run Kafka (KRaft), Redis, a secured Redis (ACL user, TLS), a Sentinel watching that "
        "Redis, a 3-master Redis Cluster, Prometheus and Alertmanager on 127.0.0.1 for "
        "development, tests and CI, each from its own directory under RETENTION_STATE "
        "(default <repo>/.stack).",
        "Ports and places come from the RETENTION_* variables the tracker itself reads "
        "(RETENTION_KAFKA_PORT, RETENTION_REDIS_PORT, RETENTION_PROMETHEUS_PORT, ...; `env` "
        "lists them all), so a second stack is one set of variables away.",
        "Run it as `bash scripts/stack.sh COMMAND`: that installs the Debian packages and the "
        "Kafka jars first.",
    ]
)

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def load() -> StackSettings:
    """The settings, or a StackError naming each bad RETENTION_* variable."""
    try:
        return StackSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"RETENTION_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise StackError(f"bad setting: {problems}") from None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """A StackError ends the command with its message on stderr and exit code 1."""
    try:
        yield
    except StackError as exc:
        errors.print(f"stack: ERROR: {exc}", markup=False)
        raise typer.Exit(1) from None


@app.command()
def install() -> None:
    """Check that the servers and the Kafka jars are installed (the shell installs them)."""
    with reported():
        control.install(load())


@app.command()
def up() -> None:
    """Start each service that is not running and wait until all are ready (0 if they run)."""
    with reported():
        control.up(load())


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="Also delete the state directory.")] = False,
) -> None:
    """Stop what the stack started (SIGTERM, SIGKILL after RETENTION_STACK_STOP_TIMEOUT)."""
    with reported():
        control.down(load(), purge)


@app.command()
def restart(
    service: Annotated[str, typer.Argument(help=f"One of {', '.join(SERVICE_NAMES)}.")],
) -> None:
    """Stop one service and start it again on its data; the others keep running."""
    with reported():
        control.restart(load(), service)


@app.command()
def status() -> None:
    """One line per service; exit 0 when every one runs, 3 otherwise."""
    with reported():
        stack = load()
        rows = control.status(stack)
    table = Table(title=f"stack in {stack.state}", title_justify="left")
    for column in ("service", "", "pid", "port", "readiness"):
        table.add_column(column)
    for name, pid, check in rows:
        if check is None:
            mark, detail = Text("stopped", style="bold red"), ""
        else:
            mark = Text("ready", style="green") if check.ok else Text("not ready", style="yellow")
            detail = check.detail
        port = str(stack.service(name).port)
        table.add_row(name, mark, "-" if pid is None else str(pid), port, detail)
    console.print(table)
    raise typer.Exit(0 if all(pid is not None for _, pid, _ in rows) else 3)


@app.command()
def env(
    sasl_ssl: Annotated[
        bool,
        typer.Option(
            "--sasl-ssl",
            help="Point the clients at the SASL_SSL listener as the stack's SCRAM user "
            "(the password is read from its file when evaluated, never printed).",
        ),
    ] = False,
    redis_secure: Annotated[
        bool,
        typer.Option(
            "--redis-secure",
            help="Point the clients at the secured Redis's TLS port as its ACL user "
            "(the password is read from its file when evaluated, never printed).",
        ),
    ] = False,
) -> None:
    """Print `export RETENTION_...` lines: eval "$(bash scripts/stack.sh env)"."""
    with reported():
        print(control.env(load(), sasl_ssl, redis_secure))


if __name__ == "__main__":
    app()
