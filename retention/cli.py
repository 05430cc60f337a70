"""The `retention` command: run the worker and exporter, manage the local stack, feed,
simulate, report, status and demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from core.errors import EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from core.settings import Settings

if TYPE_CHECKING:
    from retention.mapping import Mapping
    from retention.produce import SendStats
    from retention.report import Report

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack.sh"

app = typer.Typer(
    help="Real-time retention and churn tracking: Kafka events in, exact metrics out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Install, start and stop the local Kafka, Redis and Prometheus.")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)  # progress, messages and summaries
out = Console()  # a command's own output: reports, status, JSON


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
    _refuse_foreign_state(settings)
    console.print(
        f"exporter on http://{settings.exporter_host}:{settings.exporter_port}/metrics "
        f"(namespace {settings.namespace})"
    )
    try:
        serve(settings)
    except OSError as exc:
        console.print(f"[red]cannot listen on port {settings.exporter_port}:[/red] {exc}")
        raise typer.Exit(1) from None


def _refuse_foreign_state(settings: Settings) -> None:
    """Exit 2 when the state was built under other settings (or Redis evicts keys): the
    exporter would read numbers that mean something else."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from streams.guard import StateRefused, check_state

    async def check() -> None:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30)
        try:
            await check_state(redis, settings, record=False)
        finally:
            await redis.aclose()

    try:
        asyncio.run(check())
    except StateRefused as exc:
        console.print(f"[red]refusing to start:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except RedisError as exc:
        console.print(f"[yellow]Redis not reachable yet ({exc}); serving anyway[/yellow]")


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


@contextmanager
def command_errors() -> Iterator[None]:
    """Turn a CommandError from anywhere below into its message and exit code."""
    try:
        yield
    except CommandError as exc:
        console.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(exc.code) from None


# --- feed ---------------------------------------------------------------------------------

FEED_EXIT = (
    "Exit codes: 0 every row sent; 1 some rows rejected (they are in the rejects file) "
    "unless --allow-rejects; 2 bad input or options (missing file, no such column, empty "
    "input), nothing sent; 3 Kafka unreachable, nothing sent."
)


def parse_rate(text: str | None) -> float | None:
    """'500', '500/s', '30/min' or '1000/h' to events per second."""
    if text is None:
        return None
    number, _, unit = text.strip().partition("/")
    per = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(unit.strip().lower())
    try:
        value = float(number)
    except ValueError:
        value = -1
    if per is None or value <= 0:
        raise CommandError(f"--rate {text!r}: write events per second, e.g. 500 or 500/s or 30/min")
    return value / per


FEED_HELP = (
    "Send events from a file or stdin to the events topic.\n\n"
    "Every row is mapped to an event and checked exactly as the worker will check it; good "
    "rows are sent (key = customer id), bad ones are written to the rejects file with the "
    "reason. Feeding the same file twice changes nothing: rows without an id get one derived "
    "from their content, and identical rows in one file get distinct ids."
)


@app.command(help=FEED_HELP, epilog=FEED_EXIT)
def feed(
    source: Annotated[
        str,
        typer.Argument(
            help="CSV/TSV, JSON Lines or a JSON array, or a Segment/RudderStack export "
            "(track/identify calls); .gz is read too; - reads stdin."
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="auto (by extension, then content), csv or json.")
    ] = "auto",
    delimiter: Annotated[
        str | None, typer.Option(help="CSV delimiter; default from .csv/.tsv or the header.")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="TOML or JSON mapping file: a columns table (our field = their column), "
            "a types table (their name = our type), time_format, timezone, type. Flags win."
        ),
    ] = None,
    customer_col: Annotated[
        str | None, typer.Option(help="Column with the customer id (auto: customer_id, user_id…).")
    ] = None,
    time_col: Annotated[
        str | None, typer.Option(help="Column with the event time (auto: ts, timestamp, time…).")
    ] = None,
    type_col: Annotated[
        str | None, typer.Option(help="Column with the event type (auto: type, event…).")
    ] = None,
    id_col: Annotated[
        str | None,
        typer.Option(help="Column with a unique event id; without one, a stable id is derived."),
    ] = None,
    amount_col: Annotated[str | None, typer.Option(help="Column with the amount.")] = None,
    currency_col: Annotated[str | None, typer.Option(help="Column with the currency.")] = None,
    score_col: Annotated[str | None, typer.Option(help="Column with the NPS score.")] = None,
    platform_col: Annotated[str | None, typer.Option(help="Column with the platform.")] = None,
    channel_col: Annotated[str | None, typer.Option(help="Column with the channel.")] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="Give every row this type (e.g. purchase for an orders file)."),
    ] = None,
    map_type: Annotated[
        list[str] | None,
        typer.Option(help="Rename a type, THEIRS=OURS, e.g. 'Order Completed=purchase'. Repeat."),
    ] = None,
    time_format: Annotated[
        str | None,
        typer.Option(
            help="Time format: epoch_s, epoch_ms, epoch_us, iso or a strptime pattern like "
            "'%d/%m/%Y %H:%M'. Default: detect ISO 8601, RFC 2822 and epoch s/ms/us per value."
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(help="Zone of times written without an offset; default RETENTION_TIMEZONE."),
    ] = None,
    rate: Annotated[
        str | None, typer.Option(help="At most this many events per second, e.g. 500/s.")
    ] = None,
    replay_speed: Annotated[
        float | None,
        typer.Option(
            min=0.000001,
            help="Replay with the file's own timing, X times faster (e.g. 3600: an hour a "
            "second). Default: as fast as possible.",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where rejected rows go (JSON Lines); default SOURCE.rejects.jsonl."),
    ] = None,
    allow_rejects: Annotated[
        bool, typer.Option(help="Exit 0 even when rows were rejected.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Read, map and validate only; send nothing.")
    ] = False,
) -> None:
    """Map, validate and send rows; exit codes say what happened (see FEED_EXIT)."""
    from retention.feed import default_rejects_path, run_feed, summary_table
    from retention.mapping import load_mapping_file
    from retention.produce import Pacer
    from retention.sources import open_source

    settings = load_settings()
    with command_errors():
        if rate and replay_speed:
            raise CommandError("use --rate or --replay-speed, not both")
        pacer = Pacer(rate=parse_rate(rate), replay_speed=replay_speed)
        file = load_mapping_file(mapping) if mapping else {}
        flags = {
            "event_id": id_col,
            "customer_id": customer_col,
            "type": type_col,
            "ts": time_col,
            "amount": amount_col,
            "currency": currency_col,
            "score": score_col,
            "platform": platform_col,
            "channel": channel_col,
        }
        the_mapping = _mapping(settings, file, flags, event_type, map_type, time_format, tz)
        opened = open_source(source, fmt, delimiter)
        path = rejects or default_rejects_path(source)
        summary = run_feed(settings, opened, the_mapping, path, console, pacer, dry_run)
    if summary.read == 0:
        console.print(
            f"[red]error:[/red] {escape(opened.name)} has no rows: nothing to feed", soft_wrap=True
        )
        raise typer.Exit(EXIT_USAGE)
    console.print(summary_table(summary, dry_run))
    if summary.rejected_total:
        console.print(f"rejected rows are in [bold]{summary.rejects_path}[/bold]")
        for reason, example in summary.examples.items():
            console.print(f"  {reason}: {escape(example)}", soft_wrap=True)
    if summary.unsent:
        console.print("stopped early; feeding the file again is safe: rows keep their ids")
    if summary.rejected_total and not allow_rejects:
        raise typer.Exit(EXIT_PROBLEM)
    if summary.unsent:
        raise typer.Exit(EXIT_PROBLEM)


def _mapping(
    settings: Settings,
    file: dict[str, object],
    flags: dict[str, str | None],
    event_type: str | None,
    map_type: list[str] | None,
    time_format: str | None,
    tz: str | None,
) -> Mapping:
    """Mapping file first, flags on top; check what can be checked before reading a row."""
    from retention.mapping import Mapping, parse_type_names, parse_zone

    columns = _str_dict(file.get("columns"), "columns")
    columns.update({k: v for k, v in flags.items() if v})
    names = _str_dict(file.get("types"), "types")
    names.update(parse_type_names(map_type or []))
    constant = event_type or file.get("type")
    known = settings.known_types | {"identify"}
    for ours in [*names.values(), *([constant] if constant else [])]:
        if ours not in known:
            raise CommandError(
                f"{ours!r} is not an event type the tracker accepts; known: "
                f"{', '.join(sorted(known))} (declare others in RETENTION_CUSTOM_TYPES)"
            )
    zone = parse_zone(tz or str(file.get("timezone") or settings.timezone))
    fmt = time_format or file.get("time_format")
    return Mapping(
        columns=columns,
        type_constant=str(constant) if constant else None,
        type_names=names,
        time_format=str(fmt) if fmt else None,
        zone=zone,
    )


def _str_dict(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CommandError(f"mapping file: [{name}] must be a table of name = value")
    return {str(k): str(v) for k, v in value.items()}


# --- simulate -----------------------------------------------------------------------------

SIMULATE_EXIT = (
    "Exit codes: 0 done; 1 stopped early or some events not confirmed; 2 bad options; "
    "3 Kafka unreachable (the files are written all the same)."
)


SIMULATE_HELP = (
    "Generate realistic app or shop traffic and send it, with its ground truth beside it.\n\n"
    "Installs per day with weekly seasonality, a return curve, a churn hazard with optional "
    "spikes, sessions, purchases, subscriptions, NPS answers and a platform/channel mix. "
    "truth.json holds the intended parameters and the realized cohort retention of exactly "
    "the events in events.jsonl: the tracker must show the same numbers."
)


@app.command(help=SIMULATE_HELP, epilog=SIMULATE_EXIT)
def simulate(
    days: Annotated[int, typer.Option(min=1, max=3660, help="Days of traffic.")] = 42,
    installs: Annotated[
        float, typer.Option(min=0, help="Mean installs (new customers) per day.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Same seed and start, same events, byte for byte.")] = 7,
    start: Annotated[
        str | None,
        typer.Option(help="First day, YYYY-MM-DD; default: so that the last day is yesterday."),
    ] = None,
    curve: Annotated[
        str,
        typer.Option(
            help="Chance to come back on day k after install: power:DAY1:EXP (DAY1*k^-EXP) "
            "or exp:DAY1:TAU (DAY1*e^-(k-1)/TAU)."
        ),
    ] = "power:0.4:0.5",
    hazard: Annotated[
        float, typer.Option(min=0, max=1, help="Daily chance that a customer churns for good.")
    ] = 0.01,
    weekly: Annotated[
        float, typer.Option(min=0, max=1, help="Weekly seasonality of installs (weekend peak).")
    ] = 0.3,
    profile: Annotated[
        str, typer.Option(help="app (sessions, subscriptions) or shop (more purchases).")
    ] = "app",
    churn_spike: Annotated[
        list[str] | None,
        typer.Option(
            help="DAY:FACTOR multiplies the churn hazard on that day (ISO date or 0-based "
            "day index). Repeat for several."
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(help="Start today and send each event when its time comes (real time)."),
    ] = False,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds (with --live).")
    ] = None,
    output: Annotated[
        Path, typer.Option("--out", help="Directory for events.jsonl and truth.json.")
    ] = Path("simulation"),
    send: Annotated[
        bool, typer.Option(help="Send to Kafka; --no-send only writes the files.")
    ] = True,
) -> None:
    """Generate, write events.jsonl and truth.json, send (see SIMULATE_HELP)."""
    from retention.simulate import PROFILES, Curve, SimConfig, parse_spikes, run_simulation

    settings = load_settings()
    with command_errors():
        if profile not in PROFILES:
            raise CommandError(f"--profile must be one of {', '.join(PROFILES)}")
        first = _sim_start(settings, start, days, live)
        config = SimConfig(
            start=first,
            days=days,
            seed=seed,
            installs=installs,
            weekly=weekly,
            curve=Curve.parse(curve),
            hazard=hazard,
            spikes=parse_spikes(churn_spike or [], first, days),
            profile=profile,
            zone=settings.zone,
            week_start=settings.week_start_index,
            lateness_ms=settings.allowed_lateness_seconds * 1000,
        )
        result = run_simulation(
            settings, config, output, console, send=send, live=live, duration=duration
        )
    realized = result.truth["realized"]
    console.print(
        f"{realized['events']:,} events of {realized['customers']:,} customers, "
        f"{first} to {first + timedelta(days=days - 1)} ({settings.timezone})"
        + (f"; {result.sent:,} sent to {settings.events_topic}" if send else "; not sent")
    )
    console.print(f"events: {result.events_path}\nground truth: {result.truth_path}")
    if send and result.sent < realized["events"]:
        raise typer.Exit(EXIT_PROBLEM)


def _sim_start(settings: Settings, start: str | None, days: int, live: bool) -> date:
    """The first simulated day; a history must end by today, or the worker rejects it."""
    today = datetime.now(settings.zone).date()
    if live:
        if start:
            raise CommandError("--live starts today; leave out --start")
        return today
    if start is None:
        return today - timedelta(days=days)
    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise CommandError(f"--start {start!r} is not a date like 2026-03-02") from None
    if first + timedelta(days=days - 1) > today:
        raise CommandError(
            f"--start {first} with --days {days} ends after today ({today}); the worker "
            "rejects events from the future. Use --live for real-time traffic."
        )
    return first


# --- sample and demo ----------------------------------------------------------------------


@app.command()
def sample(
    customers: Annotated[int, typer.Option(min=1, help="Sample customers to feed.")] = 500,
    days: Annotated[int, typer.Option(min=1, help="Days of history, ending now.")] = 42,
) -> None:
    """Produce the small built-in sample history to the events topic (see also `simulate`)."""
    settings = load_settings()
    with command_errors():
        stats = asyncio.run(_feed_sample(settings, customers, days))
    console.print(f"fed {stats.confirmed} sample events to topic {settings.events_topic}")


async def _feed_sample(settings: Settings, customers: int, days: int) -> SendStats:
    from retention.produce import Outgoing, send_all
    from retention.sample import encode, sample_events
    from streams.events import parse_ts

    records = []
    for event in sample_events(customers=customers, days=days):
        key, value = encode(event)
        records.append(Outgoing(key, value, parse_ts(str(event["ts"]))))
    return await send_all(
        settings, records, total=len(records), description="feeding sample events", console=console
    )


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=1, help="Days of simulated history to feed.")] = 42,
    installs: Annotated[float, typer.Option(min=1, help="Mean installs per day.")] = 100,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    duration: Annotated[
        float, typer.Option(help="Seconds to keep running after the feed; 0 = until Ctrl-C.")
    ] = 0,
) -> None:
    """Start the stack, worker and exporter, feed a simulated history, and say where to look."""
    from retention.simulate import SimConfig, run_simulation

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
            config = SimConfig(
                start=_sim_start(settings, None, days, live=False),
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
    prom = os.environ.get("PROMETHEUS_PORT", "19090")
    console.print(
        "\n[bold]Look here[/bold]\n"
        "  report      retention report   (add --watch, --png DIR or --json)\n"
        "  status      retention status\n"
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


# --- report -------------------------------------------------------------------------------

REPORT_EXIT = (
    "Exit codes: 0 shown; 1 the exporter has no data yet; 2 bad options; 3 the exporter "
    "cannot be reached (is the stack running? `retention status` tells)."
)


REPORT_HELP = (
    "Cohort retention, curves, churn and CRR, and every other metric, from the exporter.\n\n"
    "Reads the exporter's /metrics (and, for churn over time, the Redis aggregates). Every "
    "kind of metric the exporter has gets a section, so new metrics appear by themselves. "
    "Cohort cells are colour-graded; curves sum retained and cohort sizes, never averaging "
    "ratios."
)


@app.command(help=REPORT_HELP, epilog=REPORT_EXIT)
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
    """Scrape, build and show the report (see REPORT_HELP)."""
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


# --- status -------------------------------------------------------------------------------


@app.command(epilog="Exit codes: 0 Kafka, Redis and the exporter are up; 3 one of them is not.")
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
    from retention.status import collect, prometheus_url, table

    settings = load_settings()
    result = collect(settings, exporter, prometheus or prometheus_url(), sample_seconds)
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        out.print(table(result))
    if not result.ok:
        raise typer.Exit(EXIT_UNREACHABLE)


# --- rebuild ------------------------------------------------------------------------------


@app.command(
    epilog="Exit codes: 0 rebuilt; 2 workers still running, an evicting Redis or bad "
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
