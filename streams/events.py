"""Decode raw Kafka values into validated events, or say precisely why not.

msgspec does the parsing and the type checks in C; the rules that msgspec cannot
express (which type names exist, timestamp range, Segment field names) follow.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import msgspec

from retention.settings import Settings

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Dimension = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

# Segment / RudderStack event names mapped onto our types unless configured otherwise.
SEGMENT_EVENT_NAMES = {
    "Application Installed": "install",
    "Application Opened": "app_open",
    "Application Uninstalled": "uninstall",
    "Order Completed": "purchase",
    "Order Refunded": "refund",
    "Subscription Started": "subscription_start",
    "Subscription Renewed": "subscription_renew",
    "Subscription Cancelled": "subscription_cancel",
}


class Reason(StrEnum):
    """Why an event went to the dead-letter topic; also the metric label."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    UNKNOWN_TYPE = "unknown_type"


class Rejected(Exception):
    """A raw value that is not a valid event; carries a reason code and a readable detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Event(msgspec.Struct, frozen=True):
    """A validated event in our own terms; ts is epoch milliseconds."""

    event_id: str
    customer_id: str
    type: str
    ts_ms: int
    amount: float | None = None
    currency: str | None = None
    score: int | None = None
    platform: str | None = None
    channel: str | None = None


class SegmentProperties(msgspec.Struct):
    revenue: Annotated[float, msgspec.Meta(ge=0)] | None = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] | None = None


class Envelope(msgspec.Struct):
    """Every field either contract may carry, all optional so that we name what is missing."""

    event_id: Id | None = None
    customer_id: Id | None = None
    type: str | None = None
    ts: str | int | float | None = None
    amount: Annotated[float, msgspec.Meta(ge=0)] | None = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] | None = None
    score: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    platform: Dimension | None = None
    channel: Dimension | None = None
    properties: dict[str, Any] | None = None
    # Segment / RudderStack spelling
    messageId: Id | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    timestamp: str | None = None
    event: str | None = None


_decoder = msgspec.json.Decoder(Envelope)


class EventDecoder:
    """Turns bytes into an Event under one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.known_types = settings.known_types | {"identify"}  # Segment identify calls
        self.max_bytes = settings.max_event_bytes
        self.max_future_ms = settings.max_future_seconds * 1000

    def decode(self, raw: bytes | None, now_ms: int | None = None) -> Event:
        if raw is None:
            raise Rejected(Reason.MALFORMED_JSON, "empty record value")
        if len(raw) > self.max_bytes:
            raise Rejected(
                Reason.OVERSIZED, f"{len(raw)} bytes is over the {self.max_bytes}-byte limit"
            )
        env = _parse(raw)
        event = _from_segment(env) if env.messageId is not None else _from_native(env)
        if event.type not in self.known_types:
            raise Rejected(
                Reason.UNKNOWN_TYPE,
                f"type {event.type!r} is not a built-in or declared custom type",
            )
        if event.type == "nps" and event.score is None:
            raise Rejected(Reason.MISSING_FIELD, "an nps event needs a `score` from 0 to 10")
        self._check_time(event.ts_ms, now_ms)
        return event

    def _check_time(self, ts_ms: int, now_ms: int | None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if ts_ms < MIN_TS_MS:
            raise Rejected(Reason.TS_OUT_OF_RANGE, f"ts {ts_ms} is before 2000-01-01")
        if ts_ms > now + self.max_future_ms:
            raise Rejected(Reason.TS_OUT_OF_RANGE, f"ts {ts_ms} is too far in the future")


def _parse(raw: bytes) -> Envelope:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Rejected(_validation_reason(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.MALFORMED_JSON, str(exc)) from None


def _validation_reason(message: str) -> Reason:
    if "- at" not in message:  # the error is about the document itself, not a field
        return Reason.NOT_AN_OBJECT
    if any(word in message for word in ("length", ">=", "<=", "regex")):
        return Reason.INVALID_VALUE
    return Reason.WRONG_TYPE


def _require(value: Any, name: str) -> Any:
    if value is None:
        raise Rejected(Reason.MISSING_FIELD, f"required field `{name}` is missing")
    return value


def _from_native(env: Envelope) -> Event:
    return Event(
        event_id=_require(env.event_id, "event_id"),
        customer_id=_require(env.customer_id, "customer_id"),
        type=_require(env.type, "type"),
        ts_ms=parse_ts(_require(env.ts, "ts")),
        amount=env.amount,
        currency=env.currency,
        score=env.score,
        platform=env.platform,
        channel=env.channel,
    )


def _from_segment(env: Envelope) -> Event:
    customer = env.userId or env.anonymousId
    if env.type == "identify":
        kind = "identify"
    elif env.type in (None, "track"):
        name = _require(env.event, "event")
        kind = SEGMENT_EVENT_NAMES.get(name, name)
    else:
        raise Rejected(Reason.INVALID_VALUE, f"Segment call type {env.type!r} is not accepted")
    try:
        props = msgspec.convert(env.properties or {}, SegmentProperties, strict=False)
    except msgspec.ValidationError as exc:
        raise Rejected(_validation_reason(str(exc)), f"properties: {exc}") from None
    return Event(
        event_id=_require(env.messageId, "messageId"),
        customer_id=_require(customer, "userId"),
        type=kind,
        ts_ms=parse_ts(_require(env.timestamp, "timestamp")),
        amount=props.revenue,
        currency=props.currency,
    )


def parse_ts(value: str | int | float) -> int:
    """RFC 3339 text (with an offset) or epoch milliseconds, to epoch milliseconds."""
    if isinstance(value, int | float):
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(Reason.BAD_TIMESTAMP, f"ts {value!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise Rejected(Reason.BAD_TIMESTAMP, f"ts {value!r} has no UTC offset")
    return (parsed - UNIX_EPOCH) // timedelta(milliseconds=1)
