"""`retention report`: the exporter's metrics as tables, JSON, PNGs or a live view."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import EXIT_USAGE, CommandError
from core.settings import Settings
from retention.commands.common import command_errors, console, load_settings, out

if TYPE_CHECKING:
    from retention.report import Report

EPILOG = (
    "Exit codes: 0 shown; 1 the exporter has no data yet; 2 bad options; 3 the exporter "
    "cannot be reached (is the stack running? `retention status` tells)."
)


HELP = (
    "Cohort retention, curves, churn and CRR, and every other metric, from the exporter.\n\n"
    "Reads the exporter's /metrics (and, for churn over time, the Redis aggregates). Every "
    "kind of metric the exporter has gets a section, so new metrics appear by themselves. "
    "Cohort cells are colour-graded; curves sum retained and cohort sizes, never averaging "
    "ratios."
)


def report(
    exporter: Annotated[
        str | None,
        typer.Option(help="The exporter's /metrics URL; default from RETENTION_EXPORTER_*."),
    ] = None,
    period: Annotated[
        list[str] | None,
        typer.Option(help="Cohort tables to show: day, week, month or all. Repeat. Default week."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything as JSON, for scripts.")
    ] = False,
    png: Annotated[
        Path | None,
        typer.Option(help="Also write PNGs here: cohort heatmaps, retention curves, churn."),
    ] = None,
    watch: Annotated[bool, typer.Option(help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 5.0,
) -> None:
    """Scrape, build and show the report (see HELP)."""
    from retention.render import render
    from retention.scrape import exporter_url

    settings = load_settings()
    url = exporter or exporter_url(settings)
    periods = _periods(period)
    with command_errors():
        if watch and (as_json or png):
            raise CommandError("--watch refreshes the terminal view; leave out --json and --png")
        if watch:
            _watch(settings, url, periods, interval)
            return
        built = _build_report(settings, url)
        if as_json:
            from retention.report import as_json as report_json

            out.print_json(json.dumps(report_json(built)))
        else:
            out.print(render(built, periods))
        if png:
            from retention.charts import write_pngs

            for path in write_pngs(built, png):
                console.print(f"wrote {path}")


def _periods(period: list[str] | None) -> list[str]:
    chosen = period or ["week"]
    if "all" in chosen:
        return ["day", "week", "month"]
    bad = [p for p in chosen if p not in ("day", "week", "month")]
    if bad:
        console.print(f"[red]error:[/red] --period must be day, week, month or all, not {bad[0]!r}")
        raise typer.Exit(EXIT_USAGE)
    return chosen


def _build_report(settings: Settings, url: str) -> Report:
    from retention.history import churn_history
    from retention.report import build
    from retention.scrape import fetch

    built = build(fetch(url))
    if built.watermark_ms is not None:
        try:
            built.churn_history = churn_history(settings, built.watermark_ms)
        except CommandError as exc:
            built.notes.append(f"churn over time needs Redis: {exc.message}")
    return built


def _watch(settings: Settings, url: str, periods: list[str], interval: float) -> None:
    from rich.console import RenderableType
    from rich.live import Live
    from rich.text import Text

    from retention.render import render

    def frame() -> RenderableType:
        try:
            return render(_build_report(settings, url), periods)
        except CommandError as exc:
            return Text(f"{exc.message}\n(retrying every {interval:g} s; Ctrl-C stops)", "yellow")

    try:
        with Live(frame(), console=out, screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass
