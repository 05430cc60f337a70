"""`retention demo`: the whole pipeline on one machine, fed by `retention simulate`'s
generator, with directions to every place to look."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from core.settings import Settings
from retention.commands.common import command_errors, console, load_settings, run_stack


def demo(
    days: Annotated[int, typer.Option(min=1, help="Days of simulated history to feed.")] = 42,
    installs: Annotated[float, typer.Option(min=1, help="Mean installs per day.")] = 100,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    duration: Annotated[
        float, typer.Option(help="Seconds to keep running after the feed; 0 = until Ctrl-C.")
    ] = 0,
) -> None:
    """Start the stack, worker and exporter, feed a simulated history, and say where to look."""
    from retention.simulate.presets import preset_config
    from retention.simulate.run import first_day, run_simulation

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
        with command_errors():
            config = preset_config(
                "standard",
                first_day(settings, None, days, live=False),
                days=days,
                seed=seed,
                installs=installs,
                zone=settings.zone,
                week_start=settings.week_start_index,
                lateness_ms=settings.allowed_lateness_seconds * 1000,
            )
            result = run_simulation(settings, config, logs / "simulation", console)
        console.print(
            f"fed {result.sent:,} simulated events to topic {settings.events_topic}; "
            f"ground truth in {result.truth_path}"
        )
        _say_where_to_look(settings)
        _wait(duration)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "retention", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )


def _say_where_to_look(settings: Settings) -> None:
    console.print(
        "\n[bold]Look here[/bold]\n"
        "  report      retention report   (add --watch, --png DIR or --json)\n"
        "  status      retention status\n"
        f"  metrics     http://{settings.exporter_host}:{settings.exporter_port}/metrics\n"
        f"  Prometheus  {settings.prometheus_url}/graph?g0.expr=retention_cohort_ratio\n"
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
