"""`retention feed`: map, validate and send rows from a file or stdin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from core.errors import EXIT_PROBLEM, EXIT_USAGE, CommandError
from core.settings import Settings
from retention.commands.common import command_errors, console, load_settings

if TYPE_CHECKING:
    from retention.mapping import Mapping

EPILOG = (
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


HELP = (
    "Send events from a file or stdin to the events topic.\n\n"
    "Every row is mapped to an event and checked exactly as the worker will check it; good "
    "rows are sent (key = customer id), bad ones are written to the rejects file with the "
    "reason. Feeding the same file twice changes nothing: rows without an id get one derived "
    "from their content, and identical rows in one file get distinct ids.\n\n"
    "Formats: CSV/TSV, columns separated by runs of spaces, JSON Lines, a JSON array, "
    "Segment/RudderStack exports. A column file's first line is its header, unless "
    "--columns names the columns or the line holds no letter at all (data): a headerless "
    "CDNOW purchase history (`00001 19970101 1 11.77`: customer_id date number_of_cds "
    "dollar_value) is recognised and fed as purchases of dollar_value; so is the same "
    "file with that header. Times: ISO 8601 (also the basic date 19970101), RFC 2822 and "
    "epoch s/ms/us; events before RETENTION_EARLIEST_EVENT_TIME (default 2000-01-01) are "
    "rejected, so set it earlier to replay older history."
)


def feed(
    source: Annotated[
        str,
        typer.Argument(
            help="CSV/TSV or space-separated columns, JSON Lines or a JSON array, or a "
            "Segment/RudderStack export (track/identify calls); .gz is read too; - reads stdin."
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto (by extension, then content), csv (any delimiter, spaces too) or json.",
        ),
    ] = "auto",
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="Column delimiter, or 'space' for runs of spaces/tabs; default from "
            ".csv/.tsv or the first line."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help="Names of the columns of a file without a header, comma-separated, e.g. "
            "customer_id,ts,type,amount (the first line is then data)."
        ),
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
    """Map, validate and send rows; exit codes say what happened (see EPILOG)."""
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
        names = [c.strip() for c in columns.split(",")] if columns else None
        opened = open_source(source, fmt, delimiter, names)
        if opened.layout:
            console.print(
                f"{opened.layout} layout: columns {' '.join(opened.columns or [])}; "
                f"each row is a {opened.event_type} unless --type says otherwise",
                soft_wrap=True,
            )
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
