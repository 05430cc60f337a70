"""Turn a source row into one of our events: which column is what, times, type names, ids.

Rows are validated here with the worker's own decoder, so what `feed` sends is exactly
what the worker accepts, and what it would dead-letter is rejected (and kept) up front.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from core.errors import CommandError
from core.settings import Settings
from streams.events import (
    SEGMENT_DIMENSIONS,
    SEGMENT_EVENT_NAMES,
    EventDecoder,
    Reason,
    Rejected,
    segment_dimension,
)

FIELDS = (
    "event_id",
    "customer_id",
    "type",
    "ts",
    "amount",
    "currency",
    "score",
    "platform",
    "channel",
    "billing_period",
)
REQUIRED = ("customer_id", "ts", "type")
WORDS = {"customer_id": "customer id", "ts": "event time", "type": "event type"}
# Column names tried, in order, when a field is not mapped explicitly (case-insensitive).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "id", "message_id", "messageId", "uuid", "eventId"),
    "customer_id": (
        "customer_id",
        "customerId",
        "customer",
        "user_id",
        "userId",
        "user",
        "anonymous_id",
        "anonymousId",
        "client_id",
    ),
    "type": ("type", "event_type", "event", "event_name", "action"),
    "ts": (
        "ts",
        "timestamp",
        "time",
        "when",
        "event_time",
        "occurred_at",
        "created_at",
        "datetime",
        "date",
        "originalTimestamp",
    ),
    "amount": ("amount", "revenue", "price", "value", "total", "dollar_value"),
    "currency": ("currency", "currency_code"),
    "score": ("score", "nps", "nps_score", "rating"),
    "platform": ("platform", "os"),
    "channel": ("channel", "utm_source", "acquisition_channel"),
    "billing_period": ("billing_period", "interval", "billing_interval", "plan_interval"),
}
SEGMENT_CALLS = frozenset({"track", "identify", "page", "screen", "group", "alias"})
SEGMENT_PATHS: dict[str, tuple[str, ...]] = {
    "event_id": ("messageId",),
    "customer_id": ("userId", "anonymousId"),
    "ts": ("timestamp", "originalTimestamp", "sentAt", "receivedAt"),
    "amount": ("properties.revenue", "properties.total"),
    "currency": ("properties.currency",),
    "score": ("properties.score",),
    "billing_period": ("properties.billing_period", "properties.interval"),
}
EPOCH_UNITS = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 0.001}
NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
SLASH_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})(.*)$")
# ISO 8601's basic date, YYYYMMDD: read as a date, never as epoch seconds (19970101 would
# be 1970-08-20 as seconds, and no real history has 8-digit epoch times)
BASIC_DATE = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class Mapping:
    """How to read our fields out of someone else's rows."""

    columns: dict[str, str] = field(default_factory=dict)  # our field -> column or a.b path
    type_constant: str | None = None  # every row has this type (e.g. an orders export)
    type_names: dict[str, str] = field(default_factory=dict)  # their type name -> ours
    time_format: str | None = None  # None = detect; epoch_s|epoch_ms|epoch_us|iso|strptime
    zone: tzinfo = UTC  # for times written without an offset


def load_mapping_file(path: Path) -> dict[str, Any]:
    """Read a small TOML or JSON mapping file: [columns], [types], time_format, timezone, type."""
    if not path.exists():
        raise CommandError(f"mapping file {path}: no such file")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise CommandError(f"mapping file {path}: {exc}") from None
    unknown = set(data) - {"columns", "types", "time_format", "timezone", "type"}
    if unknown:
        raise CommandError(f"mapping file {path}: unknown keys {', '.join(sorted(unknown))}")
    bad = set(data.get("columns", {})) - set(FIELDS)
    if bad:
        raise CommandError(
            f"mapping file {path}: [columns] names {', '.join(sorted(bad))}; "
            f"our fields are {', '.join(FIELDS)}"
        )
    return data


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CommandError(f"unknown time zone {name!r}; use an IANA name like UTC") from None


def parse_type_names(pairs: list[str]) -> dict[str, str]:
    """`--map-type 'Order Completed=purchase'` pairs into a dict."""
    out = {}
    for pair in pairs:
        name, sep, ours = pair.rpartition("=")
        if not sep or not name or not ours:
            raise CommandError(
                f"--map-type wants THEIRS=OURS, e.g. 'Order Completed=purchase'; got {pair!r}"
            )
        out[name] = ours
    return out


def resolve_columns(mapping: Mapping, columns: list[str]) -> dict[str, str]:
    """For a CSV header: our field -> the column that holds it; stop early when one is missing."""
    lower = {c.lower(): c for c in columns}
    out: dict[str, str] = {}
    for name in FIELDS:
        if name in mapping.columns:
            wanted = mapping.columns[name]
            if wanted not in columns and wanted.lower() not in lower:
                raise CommandError(
                    f"column {wanted!r} (for {name}) is not in the header; "
                    f"the columns are: {', '.join(columns)}"
                )
            out[name] = wanted if wanted in columns else lower[wanted.lower()]
            continue
        found = next((lower[c.lower()] for c in CANDIDATES[name] if c.lower() in lower), None)
        if found is not None:
            out[name] = found
    needed = [n for n in REQUIRED if n not in out and not (n == "type" and mapping.type_constant)]
    if needed:
        hints = "; ".join(
            f"for the {WORDS[n]} we looked for {', '.join(CANDIDATES[n])} (or name it with "
            f"--{_flag(n)})"
            for n in needed
        )
        raise CommandError(
            f"no {' and no '.join(WORDS[n] for n in needed)} column. The columns are: "
            f"{', '.join(columns)}; {hints}."
        )
    return out


def _flag(name: str) -> str:
    return {"customer_id": "customer-col", "ts": "time-col", "type": "type-col or --type"}.get(
        name, name.replace("_", "-") + "-col"
    )


class RowMapper:
    """Maps rows to validated, encoded events; derives ids for rows that have none."""

    def __init__(
        self, settings: Settings, mapping: Mapping, columns: dict[str, str] | None
    ) -> None:
        self.mapping = mapping
        self.columns = columns  # resolved CSV columns, or None for JSON (per row)
        self.decoder = EventDecoder(settings)
        self.known = settings.known_types | {"identify"}
        self.seen: Counter[bytes] = Counter()

    def map(self, data: dict[str, Any]) -> tuple[str, int, bytes]:
        """(customer_id, ts_ms, JSON value to send), or Rejected with a reason; a row
        never stops the feed, whatever it holds."""
        try:
            return self._map(data)
        except Rejected:
            raise
        except UnicodeError as exc:
            raise Rejected(Reason.INVALID_ENCODING, f"not valid text: {exc}"[:200]) from None
        except Exception as exc:  # reported per row; the feed goes on
            raise Rejected(Reason.UNDECODABLE, f"{type(exc).__name__}: {exc}"[:200]) from None

    def _map(self, data: dict[str, Any]) -> tuple[str, int, bytes]:
        values = self._values(data)
        customer = _text(values.get("customer_id"))
        if not customer:
            raise Rejected(Reason.MISSING_FIELD, "no customer id in this row")
        kind = self._type(values, data)
        raw_ts = values.get("ts")
        if raw_ts is None or (isinstance(raw_ts, str) and not raw_ts.strip()):
            raise Rejected(Reason.MISSING_FIELD, "no time in this row")
        event: dict[str, Any] = {
            "event_id": "",
            "customer_id": customer,
            "type": kind,
            "ts": parse_time(raw_ts, self.mapping.time_format, self.mapping.zone),
        }
        event.update(_optional(values))
        event["event_id"] = _text(values.get("event_id")) or self._derive_id(event)
        value = msgspec.json.encode(event)
        self.decoder.decode(value)
        return customer, int(event["ts"]), value

    def _values(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.columns is not None:
            return {name: data.get(col) for name, col in self.columns.items()}
        segment = "messageId" in data or data.get("type") in SEGMENT_CALLS
        out: dict[str, Any] = {}
        for name in FIELDS:
            if name in self.mapping.columns:
                paths: tuple[str, ...] = (self.mapping.columns[name],)
            elif segment:
                paths = SEGMENT_PATHS.get(name, ())
            else:
                paths = CANDIDATES[name]
            out[name] = next((v for p in paths if (v := _lookup(data, p)) not in (None, "")), None)
        if segment:  # platform and channel as the worker reads them (streams/events.py)
            for name in SEGMENT_DIMENSIONS:
                if name not in self.mapping.columns:
                    out[name] = segment_dimension(data.get("properties"), data.get("context"), name)
        if segment and "type" not in self.mapping.columns:
            out["type"] = _segment_type(data)
        return out

    def _type(self, values: dict[str, Any], data: dict[str, Any]) -> str:
        if self.mapping.type_constant:
            return self.mapping.type_constant
        name = _text(values.get("type"))
        if not name:
            raise Rejected(Reason.MISSING_FIELD, "no event type in this row")
        if name in self.mapping.type_names:
            return self.mapping.type_names[name]
        if name in self.known:
            return name
        if name in SEGMENT_EVENT_NAMES:
            return SEGMENT_EVENT_NAMES[name]
        snake = re.sub(r"[\s-]+", "_", name.strip().lower())
        if snake in self.known:
            return snake
        raise Rejected(
            Reason.UNKNOWN_TYPE,
            f"type {name!r} is not one of ours; map it with --map-type '{name}=purchase' (say), "
            "or declare it in RETENTION_CUSTOM_TYPES",
        )

    def _derive_id(self, event: dict[str, Any]) -> str:
        """Same row content -> same id (feeding twice changes nothing); the n-th identical row
        in one input gets its own id (distinct rows never collapse)."""
        # a billing period joins the content only when given, so ids of rows without one
        # stay what they were before the field was read
        named = [name for name in FIELDS if name != "event_id"]
        if "billing_period" not in event:
            named.remove("billing_period")
        content = msgspec.json.encode([event.get(name) for name in named])
        digest = hashlib.sha256(content).digest()[:16]
        n = self.seen[digest]
        self.seen[digest] = n + 1
        return f"feed-{digest.hex()}" + (f"-{n}" if n else "")


def _segment_type(data: dict[str, Any]) -> str | None:
    call = data.get("type", "track")
    if call == "identify":
        return "identify"
    if call == "track" or call is None:
        event = data.get("event")
        return event if isinstance(event, str) else None
    raise Rejected(
        Reason.INVALID_VALUE,
        f"Segment {call!r} calls are not events we count; only track and identify are",
    )


def _lookup(data: dict[str, Any], path: str) -> Any:
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if value is None and "." not in path:
        lowered = {k.lower(): v for k, v in data.items()}
        return lowered.get(path.lower())
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Rejected(Reason.WRONG_TYPE, f"expected text, got {type(value).__name__} {value!r}")


def _optional(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    amount = values.get("amount")
    if amount not in (None, ""):
        out["amount"] = _number(amount, "amount")
    currency = _text(values.get("currency"))
    if currency:
        out["currency"] = currency.upper()
    score = values.get("score")
    if score not in (None, ""):
        number = _number(score, "score")
        if number != int(number):
            raise Rejected(Reason.INVALID_VALUE, f"score {score!r} is not a whole number")
        out["score"] = int(number)
    for name in ("platform", "channel", "billing_period"):
        text = _text(values.get(name))
        if text:
            out[name] = text
    return out


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise Rejected(Reason.WRONG_TYPE, f"{name} {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if NUMBER.match(text):
        return float(text)
    raise Rejected(Reason.WRONG_TYPE, f"{name} {value!r} is not a number (write 1234.5)")


def parse_time(value: Any, fmt: str | None, zone: tzinfo) -> int:
    """A time in any common notation -> epoch ms; naive times are read in `zone`."""
    if isinstance(value, bool):
        raise Rejected(Reason.BAD_TIMESTAMP, f"time {value!r} is not a time")
    if fmt in EPOCH_UNITS:
        return _epoch(value, EPOCH_UNITS[fmt])
    if fmt and fmt != "iso":
        try:
            parsed = datetime.strptime(str(value).strip(), fmt)
        except ValueError:
            raise Rejected(
                Reason.BAD_TIMESTAMP, f"time {value!r} does not match --time-format {fmt!r}"
            ) from None
        return _ms(parsed, zone)
    if isinstance(value, int | str) and BASIC_DATE.match(str(value).strip()):
        return _ms(_basic_date(str(value).strip()), zone)
    if isinstance(value, int | float) or (isinstance(value, str) and NUMBER.match(value.strip())):
        if fmt == "iso":
            raise Rejected(Reason.BAD_TIMESTAMP, f"time {value!r} is a number, not ISO 8601")
        return _epoch(value, _epoch_unit(float(value)))
    return _ms(_parse_text(str(value).strip(), value), zone)


def _basic_date(text: str) -> datetime:
    """YYYYMMDD at local midnight; an impossible day (19970231) is a rejected row."""
    try:
        return datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise Rejected(
            Reason.BAD_TIMESTAMP,
            f"time {text!r} reads as a YYYYMMDD date, but there is no such day",
        ) from None


def _parse_text(text: str, original: Any) -> datetime:
    slash = SLASH_DATE.match(text)
    if slash:
        text = f"{slash[1]}-{slash[2]}-{slash[3]}{slash[4]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)  # RFC 2822, as in e-mail and HTTP headers
    except (TypeError, ValueError, IndexError):
        pass
    raise Rejected(
        Reason.BAD_TIMESTAMP,
        f"time {original!r} is not a format we recognise (ISO 8601, YYYYMMDD, RFC 2822 or "
        "epoch seconds/ms); name its format with --time-format, e.g. '%d/%m/%Y %H:%M'",
    )


def _epoch_unit(number: float) -> float:
    """Milliseconds per unit, guessed from the magnitude (a time before 1973 in seconds has
    at most 8 digits, read as YYYYMMDD instead)."""
    size = abs(number)
    if size < 1e11:
        return 1000.0  # seconds
    if size < 1e14:
        return 1.0  # milliseconds
    if size < 1e17:
        return 0.001  # microseconds
    return 0.000001  # nanoseconds


def _epoch(value: Any, ms_per_unit: float) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Rejected(Reason.BAD_TIMESTAMP, f"time {value!r} is not an epoch number") from None
    return round(number * ms_per_unit)


def _ms(parsed: datetime, zone: tzinfo) -> int:
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
