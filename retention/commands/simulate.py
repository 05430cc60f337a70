"""`retention simulate`: generate traffic with a known answer, write it, send it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar, cast

import typer

from core.errors import EXIT_PROBLEM, CommandError
from retention.commands.common import command_errors, console, load_settings
from retention.simulate.presets import PRESETS, preset_values

T = TypeVar("T")

EPILOG = (
    "Exit codes: 0 done; 1 stopped early or some events not confirmed; 2 bad options; "
    "3 Kafka unreachable (the files are written all the same)."
)


HELP = (
    "Generate realistic app or shop traffic and send it, with its ground truth beside it.\n\n"
    "Installs per day with weekly seasonality, a return curve, a churn hazard with optional "
    "spikes, sessions, purchases, subscriptions, NPS answers and a platform/channel mix. "
    "truth.json holds the intended parameters and the realized cohort retention of exactly "
    "the events in events.jsonl: the tracker must show the same numbers."
)


PRESET_HELP = (
    "Starting values for the other options (options given here win): "
    + "; ".join(f"{name}, {about}" for name, (about, _) in PRESETS.items())
    + ". Values in docs/commands.md."
)


def simulate(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "standard",
    days: Annotated[int, typer.Option(min=1, max=3660, help="Days of traffic.")] = 42,
    installs: Annotated[
        float, typer.Option(min=0, help="Mean installs (new customers) per day.")
    ] = 100,
    customers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Exactly this many customers, on install days drawn uniformly (instead of "
            "--installs); 0: use --installs.",
        ),
    ] = 0,
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
        str,
        typer.Option(
            help="app (sessions, subscriptions), shop (more purchases), bench or varied "
            "(see docs/commands.md)."
        ),
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
    """Generate, write events.jsonl and truth.json, send (see HELP)."""
    from retention.simulate.config import PROFILES, Curve, SimConfig, parse_spikes
    from retention.simulate.run import first_day, run_simulation

    settings = load_settings()
    with command_errors():
        chosen = preset_values(preset)

        def option(name: str, value: T) -> T:
            """The preset's value for an option left at its default, else the given one."""
            source = ctx.get_parameter_source(name)  # None or DEFAULT: not on the command line
            given = source is not None and source.name != "DEFAULT"
            return value if given else cast(T, chosen.get(name, value))

        days, profile = option("days", days), option("profile", profile)
        if profile not in PROFILES:
            raise CommandError(f"--profile must be one of {', '.join(PROFILES)}")
        first = first_day(settings, start, days, live)
        config = SimConfig(
            start=first,
            days=days,
            seed=option("seed", seed),
            installs=option("installs", installs),
            customers=option("customers", customers),
            weekly=option("weekly", weekly),
            curve=Curve.parse(option("curve", curve)),
            hazard=option("hazard", hazard),
            spikes=parse_spikes(churn_spike or [], first, days),
            profile=profile,
            zone=settings.zone,
            week_start=settings.week_start_index,
            lateness_ms=settings.allowed_lateness_seconds * 1000,
            currency=settings.currency,
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
