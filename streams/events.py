"""Decode raw Kafka values into validated events, or say precisely why not.

msgspec does the parsing and the type checks in C; the rules that msgspec cannot
express (which type names exist, timestamp and amount range, Segment field names) and
the conversion of amounts to the reporting currency follow. Any input at all ends as
an Event or a Rejected, never another exception.
"""

from __future__ import annotations

import math
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import msgspec

from core.settings import Settings

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHOWN_CHARS = 80  # of an offending value quoted in a rejection's detail
UNDECODABLE_CHARS = 200  # of an unexpected exception's text in a rejection's detail
BACKSLASH = ord("\\")  # an int, so `in` is a plain byte scan
# a JSON string escape: \uXXXX with its hex digits captured, or any other escaped character
ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)
# Deepest accepted nesting of arrays and objects. A fixed limit, checked before parsing,
# makes the verdict a function of the bytes alone: msgspec's own limit is whatever
# recursion depth the calling stack has left.
MAX_DEPTH = 64
JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
BRACKET = re.compile(rb"[\[\]{}]")

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
DIMENSION_CHARS = 64  # the longest platform or channel
Dimension = Annotated[str, msgspec.Meta(min_length=1, max_length=DIMENSION_CHARS)]

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


# Billing periods a subscription start or renew may name (field `billing_period` or
# `interval`, or the same in Segment `properties`), case-insensitive: True = annual.
BILLING_PERIODS = {
    "month": False,
    "monthly": False,
    "year": True,
    "yearly": True,
    "annual": True,
    "annually": True,
}
SUBSCRIBE_TYPES = frozenset({"subscription_start", "subscription_renew"})


class Reason(StrEnum):
    """Why an event went to the dead-letter topic; also the metric label."""

    EMPTY = "empty"
    OVERSIZED = "oversized"
    INVALID_ENCODING = "invalid_encoding"
    MALFORMED_JSON = "malformed_json"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNDECODABLE = "undecodable"


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
    annual: bool = False  # a subscription start or renew billed yearly


# an ISO 4217 code, in any case (it is upper-cased before the rate is looked up)
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]


class SegmentProperties(msgspec.Struct):
    revenue: Annotated[float, msgspec.Meta(ge=0)] | None = None
    currency: Currency | None = None
    billing_period: Any = None
    interval: Any = None


# Where a Segment / RudderStack call names a platform or a channel, in order of
# preference: the explicit property first, then what their SDKs put in `context`. The
# calls' own top-level `channel` (browser, server, mobile) says which library sent the
# call, not how the customer was acquired, so it is not one of them.
SEGMENT_DIMENSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "platform": (
        ("properties", "platform"),
        ("context", "device", "type"),
        ("context", "os", "name"),
    ),
    "channel": (("properties", "channel"), ("context", "campaign", "source")),
}


class Envelope(msgspec.Struct):
    """Every field either contract may carry, all optional so that we name what is missing."""

    event_id: Id | None = None
    customer_id: Id | None = None
    type: str | None = None
    ts: str | int | float | None = None
    amount: Annotated[float, msgspec.Meta(ge=0)] | None = None
    currency: Currency | None = None
    score: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    platform: Dimension | None = None
    channel: Dimension | None = None
    billing_period: Any = None
    interval: Any = None
    properties: dict[str, Any] | None = None
    context: Any = None  # Segment / RudderStack: free-form, only read by segment_dimension
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
        self.max_amount = settings.max_amount
        self.currency = settings.currency
        self.rates = settings.currency_rates
        self.min_ts_ms = settings.earliest_event_ms
        self.earliest = settings.earliest_event_time.isoformat().replace("+00:00", "Z")

    def decode(self, raw: bytes | None, now_ms: int | None = None) -> Event:
        """An Event, or Rejected for any input whatsoever: one strange record must not stop
        the worker, so an unforeseen error is rejected as `undecodable` too."""
        try:
            return self._decode(raw, now_ms)
        except Rejected:
            raise
        except Exception as exc:
            detail = _clip(f"{type(exc).__name__}: {exc}", UNDECODABLE_CHARS)
            raise Rejected(Reason.UNDECODABLE, detail) from None

    def _decode(self, raw: bytes | None, now_ms: int | None) -> Event:
        if not raw:
            raise Rejected(Reason.EMPTY, "the record has no value")
        if len(raw) > self.max_bytes:
            raise Rejected(
                Reason.OVERSIZED, f"{len(raw)} bytes is over the {self.max_bytes}-byte limit"
            )
        if not raw.isascii():  # ASCII is UTF-8; only the rest needs the full check
            _check_utf8(raw)
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # only then can it be too deep
            _check_depth(raw)
        env = _parse(raw)
        segment = env.messageId is not None
        event = _from_segment(env) if segment else _from_native(env)
        if BACKSLASH in raw:  # valid UTF-8 spells no surrogate, so only an escape can
            _check_text(event)
        if event.type not in self.known_types:
            raise Rejected(
                Reason.UNKNOWN_TYPE,
                f"type {_show(event.type)} is not a built-in or declared custom type",
            )
        if event.type == "nps" and event.score is None:
            raise Rejected(Reason.MISSING_FIELD, "an nps event needs a `score` from 0 to 10")
        event = self._in_reporting_currency(event, "properties.revenue" if segment else "amount")
        self._check_time(event.ts_ms, now_ms)
        return event

    def _in_reporting_currency(self, event: Event, name: str) -> Event:
        """The event with its amount in the reporting currency (no currency: already is).
        A currency without a rate is refused, amount or not, so that no number is ever
        summed in the wrong unit; the limit applies to the converted amount, the one summed."""
        code = self.currency if event.currency is None else event.currency.upper()
        rate = self.rates.get(code)
        if rate is None:
            raise Rejected(
                Reason.UNKNOWN_CURRENCY,
                f"currency {_show(code)} has no rate to the reporting currency {self.currency}; "
                "add it to RETENTION_CURRENCY_RATES",
            )
        amount = event.amount
        if amount is not None:
            amount = self._converted(name, amount, code, rate)
        if event.currency == self.currency or event.currency is None:
            return event  # nothing to convert or to spell in upper case
        return msgspec.structs.replace(event, amount=amount, currency=self.currency)

    def _converted(self, name: str, amount: float, code: str, rate: float) -> float:
        """amount x rate, refused when not finite, negative or over the limit."""
        if not (math.isfinite(amount) and amount >= 0):
            raise Rejected(Reason.INVALID_VALUE, _amount_problem(name, amount, self.max_amount))
        converted = amount * rate  # finite or inf, never NaN: the rate is finite and > 0
        if converted <= self.max_amount:
            return converted
        if code == self.currency:
            raise Rejected(Reason.INVALID_VALUE, _amount_problem(name, amount, self.max_amount))
        raise Rejected(
            Reason.INVALID_VALUE,
            f"{name} {amount:g} {code} is {converted:g} {self.currency}, over the "
            f"{self.max_amount:g} limit",
        )

    def _check_time(self, ts_ms: int, now_ms: int | None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if ts_ms < self.min_ts_ms:
            raise Rejected(
                Reason.TS_OUT_OF_RANGE,
                f"ts {_show(ts_ms)} is before {self.earliest} (RETENTION_EARLIEST_EVENT_TIME)",
            )
        if ts_ms > now + self.max_future_ms:
            raise Rejected(Reason.TS_OUT_OF_RANGE, f"ts {_show(ts_ms)} is too far in the future")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: object) -> str:
    """A value quoted in a detail: repr escapes what would not print, and the length is capped."""
    return _clip(repr(value), SHOWN_CHARS)


def _amount_problem(name: str, amount: float, limit: float) -> str:
    """Why an amount is refused: totals are kept in integer thousandths, which only finite
    amounts up to the configured limit keep exact."""
    if not math.isfinite(amount):
        return f"{name} {amount} is not a finite number"
    if amount < 0:
        return f"{name} {amount:g} is negative"
    return f"{name} {amount:g} is over the {limit:g} limit"


def _annual(kind: str, *given: Any) -> bool:
    """Whether a subscription start or renew is billed yearly (the first billing period
    given, default monthly); one we do not know is refused rather than guessed, since it
    decides how long the subscription lives. Other types ignore the fields."""
    billing_period = next((v for v in given if v is not None), None)
    if kind not in SUBSCRIBE_TYPES or billing_period is None:
        return False
    text = billing_period.strip().lower() if isinstance(billing_period, str) else None
    annual = BILLING_PERIODS.get(text) if text is not None else None
    if annual is None:
        known = ", ".join(BILLING_PERIODS)
        detail = f"billing period {_show(billing_period)} is not one of {known}"
        raise Rejected(Reason.INVALID_VALUE, detail)
    return annual


def _check_utf8(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            Reason.INVALID_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None


def _check_text(event: Event) -> None:
    """Ids and labels are stored as UTF-8, so each string an Event keeps must encode to it."""
    texts = (
        event.event_id,
        event.customer_id,
        event.type,
        event.currency,
        event.platform,
        event.channel,
    )
    for text in texts:
        if text is not None and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                detail = f"{_show(text)} cannot be written as UTF-8: {exc.reason}"
                raise Rejected(Reason.INVALID_ENCODING, detail) from None


def _check_depth(raw: bytes) -> None:
    """Reject nesting deeper than MAX_DEPTH, counting brackets outside strings."""
    depth = deepest = 0
    for bracket in BRACKET.finditer(JSON_STRING.sub(b'""', raw)):
        if bracket[0] in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    if deepest > MAX_DEPTH:
        detail = f"arrays and objects nest {deepest} levels deep; at most {MAX_DEPTH} are accepted"
        raise Rejected(Reason.TOO_DEEP, detail)


def _parse(raw: bytes) -> Envelope:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Rejected(_validation_reason(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        if _lone_surrogate(raw):
            detail = "a \\u escape is half of a UTF-16 surrogate pair, which UTF-8 cannot encode"
            raise Rejected(Reason.INVALID_ENCODING, detail) from None
        raise Rejected(Reason.MALFORMED_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec checks the strings it keeps as well
        raise Rejected(Reason.INVALID_ENCODING, f"not UTF-8: {exc.reason}") from None
    except RecursionError:  # msgspec nests as deep as Python's recursion limit lets it
        limit = sys.getrecursionlimit()
        detail = f"nested deeper than the JSON parser allows (under {limit} levels)"
        raise Rejected(Reason.TOO_DEEP, detail) from None


def _lone_surrogate(raw: bytes) -> bool:
    """Whether a \\u escape names half of a UTF-16 surrogate pair without the other half;
    msgspec calls such text malformed, but the fault is in its encoding."""
    high_end = -1  # where an escape of a still unpaired high surrogate ends
    for match in ESCAPE.finditer(raw):
        code = int(match[1], 16) if match[1] else -1
        if high_end >= 0:
            if match.start() != high_end or not 0xDC00 <= code <= 0xDFFF:
                return True
            high_end = -1
        elif 0xD800 <= code <= 0xDBFF:
            high_end = match.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return True
    return high_end >= 0


def _validation_reason(message: str) -> Reason:
    if "- at" not in message:  # the error is about the document itself, not a field
        return Reason.NOT_AN_OBJECT
    if message.endswith("`$.ts`"):
        if message.startswith("Number out of range"):  # would be infinite as a float
            return Reason.BAD_TIMESTAMP
        if message.startswith("Integer value out of range"):  # too many digits
            return Reason.TS_OUT_OF_RANGE
    if any(word in message for word in ("length", ">=", "<=", "regex", "out of range")):
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
        annual=_annual(env.type or "", env.billing_period, env.interval),
    )


def _from_segment(env: Envelope) -> Event:
    customer = env.userId or env.anonymousId
    if env.type == "identify":
        kind = "identify"
    elif env.type in (None, "track"):
        name = _require(env.event, "event")
        kind = SEGMENT_EVENT_NAMES.get(name, name)
    else:
        raise Rejected(Reason.INVALID_VALUE, f"Segment call type {_show(env.type)} is not accepted")
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
        platform=segment_dimension(env.properties, env.context, "platform"),
        channel=segment_dimension(env.properties, env.context, "channel"),
        annual=_annual(kind, props.billing_period, props.interval),
    )


def segment_dimension(properties: Any, context: Any, dimension: str) -> str | None:
    """A Segment call's platform or channel: the first of its SEGMENT_DIMENSIONS places
    that holds text of 1 to DIMENSION_CHARS characters. Properties and context are the
    sender's free-form objects, so a value that does not fit is passed over rather than
    failing the whole event."""
    call = {"properties": properties, "context": context}
    for path in SEGMENT_DIMENSIONS[dimension]:
        value: Any = call
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and 0 < len(value) <= DIMENSION_CHARS:
            return value
    return None


def parse_ts(value: str | int | float) -> int:
    """RFC 3339 text (with an offset) or epoch milliseconds, to epoch milliseconds."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Rejected(Reason.BAD_TIMESTAMP, f"ts {value} is not a finite number")
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(Reason.BAD_TIMESTAMP, f"ts {_show(value)} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise Rejected(Reason.BAD_TIMESTAMP, f"ts {_show(value)} has no UTC offset")
    return (parsed - UNIX_EPOCH) // timedelta(milliseconds=1)
