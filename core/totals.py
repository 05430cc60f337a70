"""Decode the shard totals hashes: counts, watermark, and where each partition stands.

Every reader of the totals (exporter, worker start-up checks, lifecycle sweep, status,
bench, tests) decodes them here, so the stored field names stay in core/schema.py.
Replies are taken as redis-py gives them: bytes or text, both work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.schema import TotalsField, offset_marker, parse_position

Reply = Mapping[bytes, bytes] | Mapping[str, str]

# The fields a status check reads: what is applied, and how far.
HEADLINE = (TotalsField.WATERMARK, TotalsField.CUSTOMERS)


@dataclass(slots=True)
class Totals:
    """The totals of every shard summed (the watermark is their newest)."""

    counts: Counter[str] = field(default_factory=Counter)  # TotalsField's plain counters
    watermark_ms: int | None = None
    events: Counter[str] = field(default_factory=Counter)  # by event type
    invalid: Counter[str] = field(default_factory=Counter)  # by rejection reason

    @property
    def customers(self) -> int:
        return self.counts[TotalsField.CUSTOMERS]

    @property
    def applied_events(self) -> int:
        return sum(self.events.values())

    @property
    def net_milli(self) -> int:
        return self.counts[TotalsField.REVENUE] - self.counts[TotalsField.REFUNDED]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def sum_totals(replies: Iterable[Reply]) -> Totals:
    """Sum HGETALL replies of shard totals; offset markers and partition marks are left
    out (positions() reads them)."""
    out = Totals()
    for reply in replies:
        for raw_name, raw_value in reply.items():
            name, value = _text(raw_name), int(raw_value)
            if name == TotalsField.WATERMARK:
                out.watermark_ms = max(out.watermark_ms or value, value)
            elif name.startswith(TotalsField.EVENTS_OF_TYPE):
                out.events[name.removeprefix(TotalsField.EVENTS_OF_TYPE)] += value
            elif name.startswith(TotalsField.INVALID_OF_REASON):
                out.invalid[name.removeprefix(TotalsField.INVALID_OF_REASON)] += value
            elif parse_position(name) is None:
                out.counts[name] += value
    return out


def headline(values: Iterable[bytes | str | None]) -> tuple[int | None, int]:
    """(watermark ms or None, customers) of one shard from an HMGET of HEADLINE."""
    watermark, customers = values
    return (None if watermark is None else int(watermark)), int(customers or 0)


def positions(reply: Reply, prefix: str = TotalsField.OFFSET_MARKER) -> dict[tuple[str, int], int]:
    """One shard's offset markers (or, with PARTITION_MARK, partition marks) by (source,
    partition)."""
    out: dict[tuple[str, int], int] = {}
    for raw_name, raw_value in reply.items():
        parsed = parse_position(_text(raw_name))
        if parsed is not None and parsed[0] == prefix:
            out[(parsed[1], parsed[2])] = int(raw_value)
    return out


def marker_fields(source: str, partitions: Iterable[int]) -> list[str]:
    """The offset-marker fields of partitions of `source`, for an HMGET."""
    return [offset_marker(source, p) for p in partitions]


def applied_offsets(shard_markers: list[Iterable[bytes | str | None]]) -> list[int | None]:
    """Per partition, the offset after the last record every shard has applied, from one
    HMGET of marker_fields per shard: None when no shard has applied any, and a shard
    without a marker holds nothing of the partition yet (-1)."""
    out: list[int | None] = []
    for values in zip(*shard_markers, strict=True):
        if all(v is None for v in values):
            out.append(None)
        else:
            out.append(min(-1 if v is None else int(v) for v in values))
    return out
