"""Decoding: every contract rule accepts what it should and names the reason when not."""

from __future__ import annotations

import json

import pytest

from retention.settings import Settings
from streams.events import Event, EventDecoder, Reason, Rejected, parse_ts

NOW = 1_790_000_000_000  # 2026-09-21, a fixed "now" for range checks


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder(Settings(custom_types=frozenset({"level_up"})))


def raw(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "app_open",
        "ts": "2026-03-01T10:00:00Z",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def reason(decoder: EventDecoder, value: bytes) -> Reason:
    with pytest.raises(Rejected) as caught:
        decoder.decode(value, now_ms=NOW)
    assert caught.value.detail  # every rejection explains itself
    return caught.value.reason


def test_valid_native_event(decoder: EventDecoder) -> None:
    event = decoder.decode(raw(type="purchase", amount=12.5, currency="EUR"), now_ms=NOW)
    assert event == Event(
        event_id="e-1",
        customer_id="c-1",
        type="purchase",
        ts_ms=parse_ts("2026-03-01T10:00:00+00:00"),
        amount=12.5,
        currency="EUR",
    )


def test_epoch_ms_and_offsets_agree(decoder: EventDecoder) -> None:
    a = decoder.decode(raw(ts="2026-03-01T11:00:00.250+01:00"), now_ms=NOW)
    b = decoder.decode(raw(ts=a.ts_ms), now_ms=NOW)
    assert a.ts_ms == b.ts_ms == 1_772_359_200_250


def test_custom_type_is_accepted_only_when_declared(decoder: EventDecoder) -> None:
    assert decoder.decode(raw(type="level_up"), now_ms=NOW).type == "level_up"
    assert reason(decoder, raw(type="purchsae")) is Reason.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"event_id": ', Reason.MALFORMED_JSON),
        (b"not json at all", Reason.MALFORMED_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b"null", Reason.NOT_AN_OBJECT),
        (raw(customer_id=None), Reason.MISSING_FIELD),
        (raw(ts=None), Reason.MISSING_FIELD),
        (raw(customer_id=123), Reason.WRONG_TYPE),
        (raw(amount="3.50"), Reason.WRONG_TYPE),
        (raw(ts=True), Reason.WRONG_TYPE),
        (raw(event_id=""), Reason.INVALID_VALUE),
        (raw(customer_id="x" * 129), Reason.INVALID_VALUE),
        (raw(amount=-1), Reason.INVALID_VALUE),
        (raw(score=11), Reason.INVALID_VALUE),
        (raw(currency="euro"), Reason.INVALID_VALUE),
        (raw(ts="yesterday"), Reason.BAD_TIMESTAMP),
        (raw(ts="2026-03-01T10:00:00"), Reason.BAD_TIMESTAMP),
        (raw(ts="2099-01-01T00:00:00Z"), Reason.TS_OUT_OF_RANGE),
        (raw(ts="1999-12-31T23:59:59Z"), Reason.TS_OUT_OF_RANGE),
        (raw(ts=5), Reason.TS_OUT_OF_RANGE),
        (raw(properties={"blob": "x" * 70_000}), Reason.OVERSIZED),
    ],
)
def test_rejections_name_their_reason(
    decoder: EventDecoder, value: bytes, expected: Reason
) -> None:
    assert reason(decoder, value) is expected


def test_segment_track_and_identify(decoder: EventDecoder) -> None:
    track = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2026-03-01T10:00:00.000Z",
        "properties": {"revenue": 19.99, "currency": "USD"},
    }
    event = decoder.decode(json.dumps(track).encode(), now_ms=NOW)
    assert (event.type, event.customer_id, event.amount, event.currency) == (
        "purchase",
        "u-1",
        19.99,
        "USD",
    )
    identify = {
        "type": "identify",
        "messageId": "m-2",
        "anonymousId": "anon-7",
        "timestamp": "2026-03-01T10:00:00Z",
    }
    event = decoder.decode(json.dumps(identify).encode(), now_ms=NOW)
    assert (event.type, event.customer_id) == ("identify", "anon-7")
    unknown = dict(track, event="Something Else")
    assert reason(decoder, json.dumps(unknown).encode()) is Reason.UNKNOWN_TYPE
    anonymous = {k: v for k, v in track.items() if k != "userId"}
    assert reason(decoder, json.dumps(anonymous).encode()) is Reason.MISSING_FIELD
