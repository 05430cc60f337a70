"""Write simulated events and their ground truth, and send the events to Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from core.errors import CommandError
from core.settings import Settings
from retention.produce import Outgoing, Pacer, send_all
from retention.simulate.config import SimConfig
from retention.simulate.generator import SimEvent, Simulator
from retention.simulate.truth import ground_truth


@dataclass
class SimResult:
    events: list[SimEvent]
    sent: int
    events_path: Path
    truth_path: Path
    truth: dict[str, Any]


def encode(event: SimEvent, seed: int) -> bytes:
    return json.dumps(event.as_dict(seed), separators=(",", ":")).encode()


def write_outputs(
    config: SimConfig,
    events: list[SimEvent],
    out: Path,
    activity: frozenset[str],
    churned_on: Counter[int],
    pure: frozenset[str],
) -> tuple[Path, Path, dict[str, Any]]:
    """events.jsonl (exactly what is sent, in order) and truth.json beside it."""
    out.mkdir(parents=True, exist_ok=True)
    events_path, truth_path = out / "events.jsonl", out / "truth.json"
    with events_path.open("wb") as f:
        for event in events:
            f.write(encode(event, config.seed) + b"\n")
    truth = ground_truth(config, events, activity, churned_on, pure)
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return events_path, truth_path, truth


def run_simulation(
    settings: Settings,
    config: SimConfig,
    out: Path,
    console: Console,
    send: bool = True,
    live: bool = False,
    duration: float | None = None,
) -> SimResult:
    """Generate, write the files, and send; live mode sends each event at its own time."""
    simulator = Simulator(config)
    events = simulator.run()
    activity = frozenset(settings.activity_types)
    if live:
        now_ms = int(time.time() * 1000)
        events = [e for e in events if e.ts_ms >= now_ms]
    if not live:
        paths = write_outputs(
            config, events, out, activity, simulator.churned_on, settings.pure_activity_types
        )
        if not send:
            return SimResult(events, 0, *paths)
    records = (Outgoing(e.customer.encode(), encode(e, config.seed), e.ts_ms) for e in events)
    stats = asyncio.run(
        send_all(
            settings,
            records,
            total=len(events),
            description="simulating live" if live else "simulating",
            console=console,
            pacer=Pacer(live=live),
            duration=duration,
        )
    )
    if live:
        paths = write_outputs(
            config,
            events[: stats.attempted],
            out,
            activity,
            simulator.churned_on,
            settings.pure_activity_types,
        )
    return SimResult(events, stats.confirmed, *paths)


def first_day(settings: Settings, start: str | None, days: int, live: bool) -> date:
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
