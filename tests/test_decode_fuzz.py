"""Any bytes in, never a crash: decode returns an Event or raises Rejected with a Reason,
and every Event it returns is safe to sum and to store. The dead-letter record made for
a rejected record stays bounded in size whatever that record held.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import datetime
from typing import Any

import msgspec
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.settings import Settings
from streams.deadletter import MAX_DETAIL_CHARS, MAX_KEY_BYTES, dead_letter_record
from streams.events import (
    SEGMENT_EVENT_NAMES,
    Envelope,
    Event,
    EventDecoder,
    Reason,
    Rejected,
)
from tests.hostile import TOKENS as HOSTILE_TOKENS

NOW = 1_790_000_000_000  # 2026-09-21, a fixed "now" for range checks
SETTINGS = Settings(custom_types=frozenset({"level_up"}), currency_rates="EUR=1.08")
DECODER = EventDecoder(SETTINGS)
MIN_TS_MS = SETTINGS.earliest_event_ms
MAX_DLQ_BYTES = SETTINGS.max_event_bytes
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID = [
    json.dumps(
        {
            "event_id": "evt-3f9a2c1e",
            "customer_id": "cust-000123",
            "type": "purchase",
            "ts": "2026-03-01T10:00:00.250+01:00",
            "amount": 12.5,
            "currency": "EUR",
            "platform": "ios",
            "channel": "organic",
        }
    ).encode(),
    json.dumps(
        {
            "event_id": "e-2",
            "customer_id": "c-2",
            "type": "nps",
            "ts": 1_772_359_200_250,
            "score": 9,
            "properties": {"note": "caf\u00e9 \U0001f600", "list": [1, 2.5, None]},
        }
    ).encode(),
    json.dumps(
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-1",
            "userId": "u-1",
            "timestamp": "2026-03-01T10:00:00.000Z",
            "properties": {"revenue": "19.99", "currency": "USD"},
        }
    ).encode(),
    json.dumps(
        {
            "type": "identify",
            "messageId": "m-2",
            "anonymousId": "anon-7",
            "timestamp": "2026-03-01T10:00:00Z",
        }
    ).encode(),
]

# Byte strings that stress one rule each, for the mutations to splice in.
TOKENS = [*HOSTILE_TOKENS, b"9" * 5000, b"[" * 1500]

# Any text, including lone surrogates (json writes them as \ud800 escapes, or as
# invalid UTF-8 bytes when not escaping)
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
NUMBER = st.one_of(
    st.integers(),
    st.floats(),
    st.sampled_from([1e306, 1e16, 1e9, 1e9 + 1, 0.0, -0.0, 2**63, 2**64, -(2**70), 10**400]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = sorted(Envelope.__struct_fields__)


@st.composite
def field(draw: st.DrawFn, good: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> Any:
    """A good value for a field most of the time, sometimes an edge case, sometimes any JSON."""
    roll = draw(st.integers(0, 19))
    return draw(JSON if roll == 0 else edge if roll == 1 else good)


MAX_TS_MS = NOW + DECODER.max_future_ms
ID = field(st.text(min_size=1, max_size=16), st.sampled_from(["", "x" * 129, "\ud800", "a\udfffb"]))
TYPE = field(
    st.sampled_from(sorted(DECODER.known_types)), st.sampled_from(["purchsae", "", "x" * 200])
)
RFC3339 = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2026, 9, 20), timezones=st.timezones()
).map(datetime.isoformat)
EDGE_TS = st.one_of(
    st.integers(),
    st.sampled_from(
        [
            MIN_TS_MS - 1,
            MAX_TS_MS + 1,
            1e308,
            2**64,
            "2026-03-01T10:00:00",
            "1e400",
            "inf",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
        ]
    ),
)
TS = field(
    st.one_of(RFC3339, st.integers(MIN_TS_MS, MAX_TS_MS), st.floats(MIN_TS_MS, MAX_TS_MS)),
    EDGE_TS,
)
GOOD_AMOUNT = st.one_of(st.floats(0, SETTINGS.max_amount), st.integers(0, int(SETTINGS.max_amount)))
EDGE_AMOUNT = st.sampled_from(
    [1e306, 1e16, 2**64, SETTINGS.max_amount, SETTINGS.max_amount + 0.5, -0.01, -0.0]
)
AMOUNT = field(GOOD_AMOUNT, EDGE_AMOUNT)
# Segment properties pass through msgspec's lax conversion, which reads numbers in strings.
REVENUE = field(
    st.one_of(GOOD_AMOUNT, GOOD_AMOUNT.map(str)),
    st.one_of(
        EDGE_AMOUNT,
        st.sampled_from(["NaN", "nan", "inf", "Infinity", "-inf", "1e400", "1e16", " 5", ""]),
    ),
)
# any case is accepted; a code without a rate (GBP) is refused
CURRENCY = field(
    st.sampled_from(["EUR", "USD", "eur", "Usd"]),
    st.sampled_from(["GBP", "EURO", "\u20ac\u20ac\u20ac"]),
)
LABEL = field(st.text(min_size=1, max_size=8), st.sampled_from(["", "x" * 65, "\ud800"]))
SCORE = field(st.integers(0, 10), st.sampled_from([-1, 11, 2**70, 5.5, "5", True]))
PROPERTIES = field(
    st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers(-999, 999), max_size=3),
    st.dictionaries(TEXT, JSON, max_size=4),
)

NATIVE = st.fixed_dictionaries(
    {"event_id": ID, "customer_id": ID, "type": TYPE, "ts": TS},
    optional={
        "amount": AMOUNT,
        "currency": CURRENCY,
        "score": SCORE,
        "platform": LABEL,
        "channel": LABEL,
        "properties": PROPERTIES,
    },
)
SEGMENT = st.fixed_dictionaries(
    {
        "messageId": ID,
        "userId": ID,
        "timestamp": field(RFC3339, EDGE_TS),
        "event": field(
            st.sampled_from([*SEGMENT_EVENT_NAMES, "level_up"]), st.sampled_from(["Nope", ""])
        ),
    },
    optional={
        "type": field(st.sampled_from(["track", "identify"]), st.sampled_from(["page", ""])),
        "anonymousId": ID,
        "properties": field(
            st.fixed_dictionaries({}, optional={"revenue": REVENUE, "currency": CURRENCY}),
            PROPERTIES,
        ),
    },
)
# Any JSON, and objects that use the contract's field names for any JSON values
ANY_JSON = st.one_of(
    JSON, st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), JSON, max_size=8)
)


@st.composite
def encoded(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """A value as JSON text, with non-ASCII escaped or written out (surrogates as they are)."""
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event with a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "token", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip":
            if data:
                data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "token":
            data[at : at + draw(st.integers(0, 6))] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def check(value: bytes | None) -> None:
    """Decode, and hold whatever comes out to the contract."""
    try:
        decoded = DECODER.decode(value, now_ms=NOW)
    except Rejected as exc:
        event(f"rejected: {exc.reason}")  # shown by --hypothesis-show-statistics
        assert isinstance(exc.reason, Reason)
        assert exc.reason is not Reason.UNDECODABLE, exc.detail  # every input has a rule
        assert 0 < len(exc.detail) <= MAX_DETAIL_CHARS
        return
    event("accepted")
    assert_safe(decoded)


def assert_safe(event: Event) -> None:
    """What the state writer relies on: finite bounded amounts, ts in range, UTF-8 text."""
    assert event.type in DECODER.known_types
    assert MIN_TS_MS <= event.ts_ms <= NOW + DECODER.max_future_ms
    if event.amount is not None:
        assert math.isfinite(event.amount)
        assert 0 <= event.amount <= SETTINGS.max_amount
    assert event.currency in (None, SETTINGS.currency)  # converted on decoding
    if event.score is not None:
        assert 0 <= event.score <= 10
    texts = (event.event_id, event.customer_id, event.currency, event.platform, event.channel)
    for text in texts:
        if text is not None:
            text.encode("utf-8")


def test_the_mutation_bases_are_valid() -> None:
    for value in VALID:
        assert_safe(DECODER.decode(value, now_ms=NOW))


@settings(FUZZ, max_examples=1000)
@given(encoded(NATIVE))
def test_native_shaped_events(value: bytes) -> None:
    check(value)


@settings(FUZZ, max_examples=800)
@given(encoded(SEGMENT))
def test_segment_shaped_events(value: bytes) -> None:
    check(value)


@settings(FUZZ, max_examples=400)
@given(encoded(ANY_JSON))
def test_arbitrary_json(value: bytes) -> None:
    check(value)


@settings(FUZZ, max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(value: bytes) -> None:
    check(value)


@settings(FUZZ, max_examples=2000)
@given(mutated())
def test_mutated_valid_events(value: bytes) -> None:
    check(value)


# --- dead-letter records ---------------------------------------------------------------


def record(key: bytes | None, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic="events",
        partition=3,
        offset=42,
        timestamp=NOW,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )


def dead_letter(
    key: bytes | None, value: bytes | None, detail: str = "why", max_bytes: int = MAX_DLQ_BYTES
) -> tuple[bytes | None, bytes, dict[str, Any]]:
    """(key, value, parsed value), checking the size bound and that strict JSON reads it."""
    out_key, out_value = dead_letter_record(record(key, value), "oversized", detail, max_bytes)
    size = len(out_key or b"") + len(out_value)
    assert size < 2 * max_bytes + 64 * 1024  # what the producer's request size allows
    assert size < max_bytes * 4 // 3 + 16 * 1024  # base64 of the kept bytes, and the rest
    body = msgspec.json.decode(out_value)
    assert body == json.loads(out_value)
    return out_key, out_value, body


def test_a_large_value_and_key_are_cut_and_fingerprinted() -> None:
    value = bytes(range(256)) * 3600  # 921,600 bytes
    key = b"k" * 2_000_000
    out_key, out_value, body = dead_letter(key, value, detail="d" * 5000)
    assert out_key == key[:MAX_KEY_BYTES]
    assert len(out_value) < MAX_DLQ_BYTES * 4 // 3 + 4096
    assert base64.b64decode(body["original"]) == value[:MAX_DLQ_BYTES]
    assert body["truncated"] is True
    assert body["original_size"] == len(value)
    assert body["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert body["key_truncated"] is True
    assert body["key_size"] == len(key)
    assert body["key_sha256"] == hashlib.sha256(key).hexdigest()
    assert len(body["detail"]) == MAX_DETAIL_CHARS
    assert (body["topic"], body["partition"], body["offset"]) == ("events", 3, 42)
    assert (body["reason"], body["timestamp_ms"]) == ("oversized", NOW)


def test_a_small_record_is_kept_whole() -> None:
    value = b'{"event_id": "e-1"}'
    out_key, _, body = dead_letter(b"c-1", value)
    assert out_key == b"c-1"
    assert base64.b64decode(body["original"]) == value
    assert body["original_size"] == len(value)
    assert body["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert not {"truncated", "key_truncated"} & body.keys()


def test_a_record_without_key_or_value() -> None:
    out_key, _, body = dead_letter(None, None)
    assert out_key is None
    assert (body["original"], body["original_size"]) == ("", 0)


@settings(FUZZ, max_examples=200)
@given(
    key=st.none() | st.binary(max_size=3000),
    value=st.none() | st.binary(max_size=3000),
    detail=st.text(st.characters(exclude_categories=()), max_size=1500),
    max_bytes=st.integers(0, 2000),
)
def test_dead_letter_records_stay_bounded(
    key: bytes | None, value: bytes | None, detail: str, max_bytes: int
) -> None:
    out_key, _, body = dead_letter(key, value, detail, max_bytes)
    original = value or b""
    assert base64.b64decode(body["original"]) == original[:max_bytes]
    assert body.get("truncated", False) is (len(original) > max_bytes)
    assert out_key == (None if key is None else key[:MAX_KEY_BYTES])
    assert len(body["detail"]) <= MAX_DETAIL_CHARS
