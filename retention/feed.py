"""`retention feed`: read rows, map and validate them, send the good ones, keep the bad ones.

Every row read ends up either confirmed by Kafka or written to the rejects file with its
reason, so the summary's numbers always add up.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from core.settings import Settings
from retention.mapping import Mapping, RowMapper, resolve_columns
from retention.produce import Outgoing, Pacer, SendStats, send_all
from retention.sources import Row, Source
from streams.events import Reason, Rejected

SEND_FAILED = "send_failed"


@dataclass
class FeedSummary:
    read: int = 0
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first detail
    rejects_path: Path | None = None
    send: SendStats | None = None

    @property
    def unsent(self) -> int:
        """Valid rows read but not sent because the feed was stopped early."""
        return self.read - self.sent - self.rejected_total

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class RejectsFile:
    """Rejected rows as JSON Lines: line, reason, detail and the row as it came in."""

    def __init__(self, path: Path, summary: FeedSummary) -> None:
        self.path = path
        self.summary = summary
        self.file: IO[str] | None = None

    def write(self, row: Row, reason: str, detail: str) -> None:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("w", encoding="utf-8")
            self.summary.rejects_path = self.path
        record: dict[str, Any] = {"line": row.line, "reason": reason, "detail": detail}
        record["row"] = row.data if row.data is not None else row.raw
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.summary.rejected[reason] += 1
        self.summary.examples.setdefault(reason, f"line {row.line}: {detail}")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def default_rejects_path(source: str) -> Path:
    return Path("feed-rejects.jsonl") if source == "-" else Path(f"{source}.rejects.jsonl")


def run_feed(
    settings: Settings,
    source: Source,
    mapping: Mapping,
    rejects_path: Path,
    console: Console,
    pacer: Pacer | None = None,
    dry_run: bool = False,
) -> FeedSummary:
    """Feed one source; returns the summary (the caller turns it into an exit code)."""
    mapping = with_layout_type(mapping, source)
    columns = resolve_columns(mapping, source.columns) if source.columns is not None else None
    mapper = RowMapper(settings, mapping, columns)
    summary = FeedSummary()
    rejects = RejectsFile(rejects_path, summary)
    try:
        records = _records(source, mapper, summary, rejects)
        if dry_run:
            summary.sent = sum(1 for _ in records)
            return summary

        def failed(record: Outgoing, exc: BaseException) -> None:
            rejects.write(record.ref, SEND_FAILED, f"{type(exc).__name__}: {exc}")

        summary.send = asyncio.run(
            send_all(
                settings,
                records,
                total=source.lines,
                description=f"feeding {source.name}",
                console=console,
                pacer=pacer,
                on_failure=failed,
            )
        )
        summary.sent = summary.send.confirmed
    finally:
        rejects.close()
    return summary


def with_layout_type(mapping: Mapping, source: Source) -> Mapping:
    """Rows of a known layout (CDNOW: one purchase a line) have the layout's type, unless
    the type is given (--type, --type-col or the mapping file)."""
    if source.event_type is None or mapping.type_constant or "type" in mapping.columns:
        return mapping
    return replace(mapping, type_constant=source.event_type)


def _records(
    source: Source,
    mapper: RowMapper,
    summary: FeedSummary,
    rejects: RejectsFile,
) -> Iterator[Outgoing]:
    for row in source.rows:
        summary.read += 1
        if row.data is None:
            reason = Reason.MALFORMED_JSON if source.format == "json" else Reason.INVALID_VALUE
            if row.error and row.error.startswith("not a JSON object"):
                reason = Reason.NOT_AN_OBJECT
            rejects.write(row, str(reason), row.error or "unreadable row")
            continue
        try:
            customer, ts_ms, value = mapper.map(row.data)
        except Rejected as exc:
            rejects.write(row, str(exc.reason), exc.detail)
            continue
        yield Outgoing(customer.encode(), value, ts_ms, ref=row)


def summary_table(summary: FeedSummary, dry_run: bool) -> Table:
    table = Table(title="feed summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("rows read", f"{summary.read:,}")
    table.add_row(
        "valid, would send" if dry_run else "sent (confirmed by Kafka)", f"{summary.sent:,}"
    )
    for reason, count in summary.rejected.most_common():
        table.add_row(f"rejected: {reason}", f"[red]{count:,}[/red]")
    if summary.unsent:
        table.add_row("not sent (stopped early)", f"[yellow]{summary.unsent:,}[/yellow]")
    if summary.send is not None:
        table.add_row("time", f"{summary.send.seconds:.1f} s")
        table.add_row("throughput", f"{summary.send.rate:,.0f} events/s")
    return table
