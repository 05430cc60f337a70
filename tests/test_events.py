"""Decoding: every contract rule accepts what it should and names the reason when not."""

from __future__ import annotations

import json

import pytest

import streams.events
from core.settings import Settings
from streams.events import Envelope, Event, EventDecoder, Reason, Rejected, parse_ts

NOW = 1_790_000_000_000  # 2026-09-21, a fixed "now" for range checks


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder(
        Settings(custom_types=frozenset({"level_up"}), currency_rates="EUR=1.08,JPY=0.0067")
    )


def raw(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "app_open",
        "ts": "2026-03-01T10:00:00Z",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def with_value(placeholder: bytes, **fields: object) -> bytes:
    """A native event whose fields given as "X" are replaced by raw JSON text."""
    return raw(**{name: "X" for name in fields}).replace(b'"X"', placeholder)


def segment(**properties: object) -> bytes:
    return json.dumps(
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-1",
            "userId": "u-1",
            "timestamp": "2026-03-01T10:00:00Z",
            "properties": properties,
        }
    ).encode()


def nested(depth: int) -> bytes:
    """A valid event whose properties hold arrays nested depth deep."""
    return raw(properties={"a": "X"}).replace(b'"X"', b"[" * depth + b"]" * depth)


def rejection(decoder: EventDecoder, value: bytes | None) -> Rejected:
    with pytest.raises(Rejected) as caught:
        decoder.decode(value, now_ms=NOW)
    assert caught.value.detail  # every rejection explains itself
    return caught.value


def reason(decoder: EventDecoder, value: bytes | None) -> Reason:
    return rejection(decoder, value).reason


def test_valid_native_event(decoder: EventDecoder) -> None:
    event = decoder.decode(raw(type="purchase", amount=12.5, currency="USD"), now_ms=NOW)
    assert event == Event(
        event_id="e-1",
        customer_id="c-1",
        type="purchase",
        ts_ms=parse_ts("2026-03-01T10:00:00+00:00"),
        amount=12.5,
        currency="USD",
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
        (raw(currency="E1R"), Reason.INVALID_VALUE),
        (raw(type="purchase", amount=1, currency="GBP"), Reason.UNKNOWN_CURRENCY),
        (raw(ts="yesterday"), Reason.BAD_TIMESTAMP),
        (raw(ts="2026-03-01T10:00:00"), Reason.BAD_TIMESTAMP),
        (raw(ts="2099-01-01T00:00:00Z"), Reason.TS_OUT_OF_RANGE),
        (raw(ts="1999-12-31T23:59:59Z"), Reason.TS_OUT_OF_RANGE),
        (raw(ts=5), Reason.TS_OUT_OF_RANGE),
        (raw(properties={"blob": "x" * 70_000}), Reason.OVERSIZED),
        (raw(properties={"blob": "x" * 900_000}), Reason.OVERSIZED),
        (nested(100_000), Reason.OVERSIZED),  # 200 KB; TOO_DEEP below under a larger limit
        (None, Reason.EMPTY),
        (b"", Reason.EMPTY),
        (b"   ", Reason.MALFORMED_JSON),
        (b'""', Reason.NOT_AN_OBJECT),
        (b"0", Reason.NOT_AN_OBJECT),
        (b"true", Reason.NOT_AN_OBJECT),
        (b"\xef\xbb\xbf{}", Reason.MALFORMED_JSON),  # a byte-order mark is UTF-8, not JSON
        (with_value(b'"a\xffb"', customer_id=1), Reason.INVALID_ENCODING),
        (with_value(b'"a\xffb"', unused=1), Reason.INVALID_ENCODING),
        (with_value(b'"\xc0\xaf"', customer_id=1), Reason.INVALID_ENCODING),  # overlong
        (with_value(b'"\xed\xa0\x80"', customer_id=1), Reason.INVALID_ENCODING),  # surrogate
        (with_value(rb'"\ud800"', customer_id=1), Reason.INVALID_ENCODING),
        (with_value(rb'"a\udc00b"', customer_id=1), Reason.INVALID_ENCODING),
        (with_value(rb'"\ud800\u0041"', customer_id=1), Reason.INVALID_ENCODING),
        (with_value(rb'"\ud800"', unused=1), Reason.INVALID_ENCODING),
        (with_value(b"NaN", amount=1), Reason.MALFORMED_JSON),
        (with_value(b"Infinity", amount=1), Reason.MALFORMED_JSON),
        (with_value(b"1e400", amount=1), Reason.INVALID_VALUE),
        (with_value(b"1" + b"0" * 400, amount=1), Reason.INVALID_VALUE),
        (with_value(b"1e400", type="nps", score=1), Reason.INVALID_VALUE),
        (raw(type="nps", score=5.5), Reason.WRONG_TYPE),
        (raw(type="nps", score=2**70), Reason.INVALID_VALUE),
        (raw(properties={"x": "X"}).replace(b'"X"', b"1e400"), Reason.INVALID_VALUE),
        (segment(revenue=12.5, other=float("inf")), Reason.MALFORMED_JSON),  # Infinity
        (with_value(b"1e400", ts=1), Reason.BAD_TIMESTAMP),
        (with_value(b"-1e400", ts=1), Reason.BAD_TIMESTAMP),
        (raw(ts=1e308), Reason.TS_OUT_OF_RANGE),
        (raw(ts=-(2**70)), Reason.TS_OUT_OF_RANGE),
        (raw(ts=2**64), Reason.TS_OUT_OF_RANGE),
        (with_value(b"9" * 4000, ts=1), Reason.TS_OUT_OF_RANGE),
        (with_value(b"9" * 5000, ts=1), Reason.TS_OUT_OF_RANGE),  # beyond Python's int parsing
        (raw(ts="0001-01-01T00:00:00+01:00"), Reason.TS_OUT_OF_RANGE),
        (raw(ts="9999-12-31T23:59:59-23:59"), Reason.TS_OUT_OF_RANGE),
        (raw(ts="2026-03-01T10:00:00+24:00"), Reason.BAD_TIMESTAMP),
        (raw(type="x" * 60_000), Reason.UNKNOWN_TYPE),
        (nested(20_000), Reason.TOO_DEEP),
    ],
)
def test_rejections_name_their_reason(
    decoder: EventDecoder, value: bytes | None, expected: Reason
) -> None:
    assert reason(decoder, value) is expected


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (raw(type="purchase", amount=1e306), "amount 1e+306 is over the 1e+09 limit"),
        (raw(type="purchase", amount=1e16), "amount 1e+16 is over the 1e+09 limit"),
        (segment(revenue=1e16), "properties.revenue 1e+16 is over the 1e+09 limit"),
        (segment(revenue="inf"), "properties.revenue inf is not a finite number"),
        (segment(revenue="Infinity"), "properties.revenue inf is not a finite number"),
        (segment(revenue="NaN"), "properties: Expected `float` >= 0.0 - at `$.revenue`"),
        (segment(revenue="-inf"), "properties: Expected `float` >= 0.0 - at `$.revenue`"),
        (segment(revenue="1e400"), "properties: Number out of range - at `$.revenue`"),
    ],
)
def test_amounts_must_be_finite_and_at_most_max_amount(
    decoder: EventDecoder, value: bytes, detail: str
) -> None:
    rejected = rejection(decoder, value)
    assert (rejected.reason, rejected.detail) == (Reason.INVALID_VALUE, detail)


def test_amount_limit_is_inclusive_and_configurable() -> None:
    decoder = EventDecoder(Settings(max_amount=100))
    assert decoder.decode(raw(type="purchase", amount=100), now_ms=NOW).amount == 100
    assert decoder.decode(segment(revenue="99.5"), now_ms=NOW).amount == 99.5
    assert reason(decoder, raw(type="purchase", amount=100.01)) is Reason.INVALID_VALUE


def test_escapes_that_make_valid_text_are_accepted(decoder: EventDecoder) -> None:
    pair = decoder.decode(with_value(rb'"\ud83d\ude00"', customer_id=1), now_ms=NOW)
    assert pair.customer_id == "\U0001f600"
    literal = decoder.decode(with_value(rb'"a\\ud800b"', customer_id=1), now_ms=NOW)
    assert literal.customer_id == "a\\ud800b"  # an escaped backslash, then plain text
    accented = decoder.decode(raw(customer_id="caf\u00e9"), now_ms=NOW)
    assert accented.customer_id.encode() == b"caf\xc3\xa9"


def test_unknown_fields_are_skipped_unread(decoder: EventDecoder) -> None:
    assert decoder.decode(with_value(b"1e400", unused=1), now_ms=NOW).type == "app_open"
    assert decoder.decode(with_value(b"[" * 60 + b"]" * 60, unused=1), now_ms=NOW)
    deep = with_value(b"[" * 500 + b"]" * 500, unused=1)
    assert reason(decoder, deep) is Reason.TOO_DEEP


def test_nesting_beyond_the_parser_is_too_deep_not_a_crash() -> None:
    roomy = EventDecoder(Settings(max_event_bytes=1 << 20))
    assert reason(roomy, nested(100_000)) is Reason.TOO_DEEP
    # the outer object and properties are two levels: 62 more make MAX_DEPTH
    assert roomy.decode(nested(62), now_ms=NOW).type == "app_open"
    assert reason(roomy, nested(63)) is Reason.TOO_DEEP
    assert reason(roomy, b'{"s": "' + b"[" * 500 + b'"}') is not Reason.TOO_DEEP


def test_strings_that_cannot_be_utf8_are_rejected(
    decoder: EventDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msgspec itself refuses lone surrogates; the decoder checks the kept strings anyway."""

    class Parser:
        def decode(self, raw: bytes) -> Envelope:
            return Envelope(event_id="e", customer_id="\ud800", type="app_open", ts=NOW)

    monkeypatch.setattr(streams.events, "_decoder", Parser())
    rejected = rejection(decoder, b'{"customer_id": "\\ud800"}')
    assert rejected.reason is Reason.INVALID_ENCODING
    assert rejected.detail == "'\\ud800' cannot be written as UTF-8: surrogates not allowed"


def test_an_unforeseen_error_is_undecodable_not_a_crash(
    decoder: EventDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(value: object) -> int:
        raise ZeroDivisionError("x" * 1000)

    monkeypatch.setattr(streams.events, "parse_ts", broken)
    rejected = rejection(decoder, raw())
    assert rejected.reason is Reason.UNDECODABLE
    assert rejected.detail.startswith("ZeroDivisionError: xxx")
    assert len(rejected.detail) <= 200


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


@pytest.mark.parametrize(
    ("fields", "platform", "channel"),
    [
        ({}, None, None),
        ({"context": {"os": {"name": "iOS"}}}, "iOS", None),
        ({"context": {"device": {"type": "ios"}, "os": {"name": "iPhone OS"}}}, "ios", None),
        (
            {"context": {"campaign": {"source": "newsletter", "medium": "email"}}},
            None,
            "newsletter",
        ),
        # explicit properties win over the context
        (
            {
                "properties": {"platform": "web", "channel": "ads"},
                "context": {"os": {"name": "Mac OS X"}, "campaign": {"source": "newsletter"}},
            },
            "web",
            "ads",
        ),
        # Segment's own top-level channel names the library, not an acquisition channel
        ({"channel": "server"}, None, None),
        # values that do not fit are passed over, the next place is read
        ({"properties": {"platform": 7}, "context": {"os": {"name": "Android"}}}, "Android", None),
        ({"context": {"device": {"type": "x" * 65}, "os": {"name": ""}}}, None, None),
        ({"context": {"device": "ios", "os": ["iOS"], "campaign": None}}, None, None),
        ({"context": "ios"}, None, None),
    ],
)
def test_segment_platform_and_channel(
    decoder: EventDecoder, fields: dict[str, object], platform: str | None, channel: str | None
) -> None:
    call = {
        "type": "track",
        "event": "Application Opened",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2026-03-01T10:00:00Z",
        **fields,
    }
    event = decoder.decode(json.dumps(call).encode(), now_ms=NOW)
    assert (event.type, event.platform, event.channel) == ("app_open", platform, channel)


@pytest.mark.parametrize(
    "env",
    [{}, {"activity_types": "app_open,purchase,reload", "purchase_types": "purchase,reload"}],
)
def test_pure_activity_types_are_the_events_the_worker_flags_as_activity_only(
    env: dict[str, str],
) -> None:
    """The worker keeps no id for these; the simulator's truth and the docs rely on it."""
    from core.schema import Flag
    from streams.state import _flag_table

    settings = Settings(**env)  # type: ignore[arg-type]
    table = _flag_table(settings)
    assert {kind for kind, flags in table.items() if flags == Flag.ACTIVITY} == (
        settings.pure_activity_types
    )


@pytest.mark.parametrize(
    ("given", "annual"),
    [
        ({}, False),
        ({"billing_period": "month"}, False),
        ({"billing_period": "Monthly"}, False),
        ({"billing_period": "year"}, True),
        ({"interval": "yearly"}, True),
        ({"billing_period": " ANNUAL "}, True),
        ({"billing_period": "annually", "interval": "month"}, True),  # billing_period first
    ],
)
def test_billing_period_of_a_subscription(
    decoder: EventDecoder, given: dict[str, object], annual: bool
) -> None:
    for kind in ("subscription_start", "subscription_renew"):
        assert decoder.decode(raw(type=kind, **given), now_ms=NOW).annual is annual


def test_unknown_billing_period_is_refused_not_guessed(decoder: EventDecoder) -> None:
    for value in ("weekly", "", 12, True, {"unit": "year"}):
        refused = rejection(decoder, raw(type="subscription_start", billing_period=value))
        assert refused.reason is Reason.INVALID_VALUE
        assert "billing period" in refused.detail
    # other types do not read the field
    assert not decoder.decode(raw(type="purchase", interval=3), now_ms=NOW).annual
    assert not decoder.decode(raw(type="subscription_cancel", interval="x"), now_ms=NOW).annual


def test_segment_billing_period_from_properties(decoder: EventDecoder) -> None:
    start = json.loads(segment(revenue=120, interval="year"))
    start["event"] = "Subscription Started"
    event = decoder.decode(json.dumps(start).encode(), now_ms=NOW)
    assert (event.type, event.amount, event.annual) == ("subscription_start", 120, True)
    start["properties"] = {"billing_period": "fortnightly"}
    assert reason(decoder, json.dumps(start).encode()) is Reason.INVALID_VALUE
    # an order's unrelated `interval` property is no reason to refuse it
    assert not decoder.decode(segment(revenue=5, interval=7), now_ms=NOW).annual


# --- one reporting currency ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"amount": 10.0}, 10.0),  # no currency: the reporting currency
        ({"amount": 10.0, "currency": "USD"}, 10.0),
        ({"amount": 10.0, "currency": "usd"}, 10.0),
        ({"amount": 10.0, "currency": "EUR"}, 10.0 * 1.08),
        ({"amount": 1500, "currency": "jpy"}, 1500 * 0.0067),  # codes in any case
        ({"amount": 0, "currency": "JPY"}, 0.0),
    ],
)
def test_amounts_are_converted_to_the_reporting_currency(
    decoder: EventDecoder, fields: dict[str, object], expected: float
) -> None:
    event = decoder.decode(raw(type="purchase", **fields), now_ms=NOW)
    assert event.amount == expected
    assert event.currency in (None, "USD")


def test_segment_revenue_is_converted_too(decoder: EventDecoder) -> None:
    event = decoder.decode(segment(revenue=20, currency="eur"), now_ms=NOW)
    assert (event.amount, event.currency) == (20 * 1.08, "USD")
    assert reason(decoder, segment(revenue=20, currency="CHF")) is Reason.UNKNOWN_CURRENCY


def test_a_currency_without_a_rate_is_refused_with_its_own_reason(decoder: EventDecoder) -> None:
    # Refused with or without an amount: a number in an unknown unit is never summed.
    for value in (
        raw(type="purchase", amount=5, currency="GBP"),
        raw(type="subscription_renew", currency="gbp"),
    ):
        problem = rejection(decoder, value)
        assert problem.reason is Reason.UNKNOWN_CURRENCY
        assert "'GBP' has no rate to the reporting currency USD" in problem.detail


def test_another_reporting_currency_converts_from_its_own_table() -> None:
    decoder = EventDecoder(Settings(currency="jpy", currency_rates="USD=150"))
    assert decoder.decode(raw(type="purchase", amount=2, currency="USD"), now_ms=NOW).amount == 300
    assert decoder.decode(raw(type="purchase", amount=7, currency="JPY"), now_ms=NOW).amount == 7
    assert decoder.decode(raw(type="purchase", amount=7), now_ms=NOW).amount == 7
    assert reason(decoder, raw(type="purchase", amount=1, currency="EUR")) is (
        Reason.UNKNOWN_CURRENCY
    )


def test_the_limit_applies_to_the_converted_amount() -> None:
    decoder = EventDecoder(Settings(max_amount=1000, currency_rates="JPY=0.0067,XAU=1e306"))
    # 100,000 JPY is 670 USD: under the limit although the written amount is not
    assert decoder.decode(
        raw(type="purchase", amount=100_000, currency="JPY"), now_ms=NOW
    ).amount == (pytest.approx(670))
    problem = rejection(decoder, raw(type="purchase", amount=200_000, currency="JPY"))
    assert problem.reason is Reason.INVALID_VALUE
    assert problem.detail == "amount 200000 JPY is 1340 USD, over the 1000 limit"
    # a product that overflows to infinity is refused, not summed
    huge = rejection(decoder, raw(type="purchase", amount=1e300, currency="XAU"))
    assert (huge.reason, huge.detail) == (
        Reason.INVALID_VALUE,
        "amount 1e+300 XAU is inf USD, over the 1000 limit",
    )


def test_the_earliest_event_time_is_a_setting() -> None:
    old = raw(ts="1997-01-01T00:00:00Z")
    default = rejection(EventDecoder(Settings()), old)
    assert default.reason is Reason.TS_OUT_OF_RANGE
    assert default.detail == (
        "ts 852076800000 is before 2000-01-01T00:00:00Z (RETENTION_EARLIEST_EVENT_TIME)"
    )
    history = EventDecoder(Settings(earliest_event_time="1997-01-01"))
    assert history.decode(old, now_ms=NOW).ts_ms == 852_076_800_000
    assert reason(history, raw(ts="1996-12-31T23:59:59.999Z")) is Reason.TS_OUT_OF_RANGE
