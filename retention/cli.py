"""The `retention` command: run the worker and exporter, manage the local stack, demo."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from retention.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack.sh"

app = typer.Typer(
    help="Real-time retention and churn tracking: Kafka events in, exact metrics out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Install, start and stop the local Kafka, Redis and Prometheus.")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)


def load_settings() -> Settings:
    """Read RETENTION_* settings, turning a bad value into a clear message and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "RETENTION_" + str(error["loc"][0]).upper()
            console.print(f"[red]configuration error[/red] {name}: {error['msg']}")
        raise typer.Exit(2) from None


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level: debug, info, warning.")] = "info",
) -> None:
    """Consume the events topic and keep per-customer state and aggregates in Redis."""
    from streams.app import run_worker

    run_worker(load_settings(), loglevel=loglevel)


@app.command()
def exporter() -> None:
    """Serve retention metrics for Prometheus on RETENTION_EXPORTER_HOST:PORT/metrics."""
    from metrics.exporter import serve

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console.print(
        f"exporter on http://{settings.exporter_host}:{settings.exporter_port}/metrics "
        f"(namespace {settings.namespace})"
    )
    try:
        serve(settings)
    except OSError as exc:
        console.print(f"[red]cannot listen on port {settings.exporter_port}:[/red] {exc}")
        raise typer.Exit(1) from None


def run_stack(*args: str) -> int:
    """Run scripts/stack.sh, the one place that installs and starts services."""
    return subprocess.call(["bash", str(STACK_SCRIPT), *args])


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


@app.command()
def sample(
    customers: Annotated[int, typer.Option(min=1, help="Sample customers to feed.")] = 500,
    days: Annotated[int, typer.Option(min=1, help="Days of history, ending now.")] = 42,
) -> None:
    """Produce the built-in sample history to the events topic."""
    settings = load_settings()
    sent = asyncio.run(_feed_sample(settings, customers, days))
    console.print(f"fed {sent} sample events to topic {settings.events_topic}")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="Sample customers to feed.")] = 500,
    days: Annotated[int, typer.Option(min=1, help="Days of history to feed.")] = 42,
    duration: Annotated[
        float, typer.Option(help="Seconds to keep running after the feed; 0 = until Ctrl-C.")
    ] = 0,
) -> None:
    """Start the stack, worker and exporter, feed sample events, and say where to look."""
    settings = load_settings()
    if run_stack("up") != 0:
        raise typer.Exit(1)
    logs = settings.state_dir
    logs.mkdir(parents=True, exist_ok=True)
    procs = [
        _spawn(["worker"], logs / "worker.log"),
        _spawn(["exporter"], logs / "exporter.log"),
    ]
    try:
        sent = asyncio.run(_feed_sample(settings, customers, days))
        console.print(f"fed {sent} sample events to topic {settings.events_topic}")
        _say_where_to_look(settings)
        _wait(duration)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "retention", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )


async def _feed_sample(settings: Settings, customers: int, days: int) -> int:
    from aiokafka import AIOKafkaProducer
    from rich.progress import Progress

    from retention.sample import encode, sample_events

    events = list(sample_events(customers=customers, days=days))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("feeding sample events", total=len(events))
            for event in events:
                key, value = encode(event)
                await producer.send(settings.events_topic, value=value, key=key)
                progress.advance(task)
            await producer.flush()
    finally:
        await producer.stop()
    return len(events)


def _say_where_to_look(settings: Settings) -> None:
    prom = os.environ.get("PROMETHEUS_PORT", "19090")
    console.print(
        "\n[bold]Look here[/bold]\n"
        f"  metrics     http://{settings.exporter_host}:{settings.exporter_port}/metrics\n"
        f"  Prometheus  http://127.0.0.1:{prom}/graph?g0.expr=retention_cohort_ratio\n"
        f"  logs        {settings.state_dir}/worker.log, exporter.log\n"
        "Press Ctrl-C to stop the worker and exporter (the stack keeps running; "
        "`retention stack down` stops it)."
    )


def _wait(duration: float) -> None:
    deadline = time.monotonic() + duration if duration > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")
