"""`retention feed`: mapping, time parsing, stable ids, clear errors, nothing lost, and a CSV
round trip through the real Kafka -> worker -> Redis -> exporter checked against the oracle."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.errors import CommandError
from core.settings import Settings
from retention.feed import with_layout_type
from retention.mapping import Mapping, RowMapper, parse_time, resolve_columns
from retention.produce import Pacer
from retention.sources import Source, open_source
from streams.events import Reason, Rejected
from tests.cli_fixtures import cli_env, closed_port, run_cli
from tests.history import generate_history, unique_events
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten, key

BERLIN = ZoneInfo("Europe/Berlin")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def said(done: object) -> str:
    """stderr with line wrapping undone."""
    return " ".join(str(getattr(done, "stderr", "")).split())


# --- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2026-03-02T10:00:00Z", None, datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("2026-03-02T12:00:00.250+02:00", None, datetime(2026, 3, 2, 10, 0, 0, 250000, UTC)),
        ("2026-03-02 10:00:00", None, datetime(2026, 3, 2, 9, tzinfo=UTC)),  # naive: Berlin
        ("2026-03-29 03:30", None, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),  # after DST
        ("2026-03-02", None, datetime(2026, 3, 1, 23, tzinfo=UTC)),
        ("2026/03/02 10:00:00", None, datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("Mon, 02 Mar 2026 10:00:00 +0000", None, datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("1772445600", None, datetime(2026, 3, 2, 10, tzinfo=UTC)),
        (1772445600.5, None, datetime(2026, 3, 2, 10, 0, 0, 500000, UTC)),
        ("1772445600123", None, datetime(2026, 3, 2, 10, 0, 0, 123000, UTC)),
        (1772445600123456, None, datetime(2026, 3, 2, 10, 0, 0, 123000, UTC)),
        ("02/03/2026 10:00", "%d/%m/%Y %H:%M", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("1772445600", "epoch_s", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("1772445600000", "epoch_ms", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        # ISO 8601's basic date YYYYMMDD (local midnight), not epoch seconds
        ("19970101", None, datetime(1996, 12, 31, 23, tzinfo=UTC)),
        (" 20260302 ", None, datetime(2026, 3, 1, 23, tzinfo=UTC)),
        (19970101, None, datetime(1996, 12, 31, 23, tzinfo=UTC)),
        ("19970101", "iso", datetime(1996, 12, 31, 23, tzinfo=UTC)),
        ("19960229", None, datetime(1996, 2, 28, 23, tzinfo=UTC)),  # a leap day
        ("19970101", "epoch_s", datetime(1970, 8, 20, 3, 15, 1, tzinfo=UTC)),  # when told so
        ("19970101", "%Y%m%d", datetime(1996, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_times_in_common_notations(value: object, fmt: str | None, expected: datetime) -> None:
    assert parse_time(value, fmt, BERLIN) == ms(expected)


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ("03/02/2026", None),
        ("yesterday", None),
        ("", None),
        ("2026-03-02", "epoch_ms"),
        ("1772445600", "iso"),
        ("2026-13-02 10:00", "%Y-%m-%d %H:%M"),
        (True, None),
        ("19970231", None),  # a YYYYMMDD date with no such day
        ("19971301", None),
        ("19970100", "iso"),
        (19970231, None),
    ],
)
def test_unparsable_times_are_rejected_with_a_hint(value: object, fmt: str | None) -> None:
    with pytest.raises(Rejected) as caught:
        parse_time(value, fmt, UTC)
    assert caught.value.reason == Reason.BAD_TIMESTAMP


def test_an_impossible_yyyymmdd_date_says_so() -> None:
    with pytest.raises(Rejected) as caught:
        parse_time("19970231", None, UTC)
    assert (
        caught.value.detail == "time '19970231' reads as a YYYYMMDD date, but there is no such day"
    )


# --- column formats --------------------------------------------------------------------------


def cells(source: Source) -> list[tuple[int, dict[str, str] | None, str | None]]:
    return [(row.line, row.data, row.error) for row in source.rows]


def test_space_separated_columns_with_a_header(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.txt",
        "user   when        action\nann 2026-03-02T10:00:00Z  install\n\n  bob\t20260303 session\n"
        "cy 20260303\n",
    )
    source = open_source(str(path))
    assert (source.format, source.columns, source.event_type) == (
        "csv",
        ["user", "when", "action"],
        None,
    )
    assert cells(source) == [
        (2, {"user": "ann", "when": "2026-03-02T10:00:00Z", "action": "install"}, None),
        (4, {"user": "bob", "when": "20260303", "action": "session"}, None),
        (5, None, "row has 2 fields, the header has 3"),
    ]


def test_a_headerless_cdnow_file_is_recognised(tmp_path: Path) -> None:
    path = write(
        tmp_path / "CDNOW_master.txt", "00001  19970101  1  11.77\n00002 19970112 2 20.0\n"
    )
    source = open_source(str(path))
    assert source.columns == ["customer_id", "date", "number_of_cds", "dollar_value"]
    assert (source.event_type, source.layout, source.lines) == ("purchase", "CDNOW", 2)
    assert [line for line, _, _ in cells(source)] == [1, 2]  # the first line is data
    header = write(
        tmp_path / "cd.txt", "customer_id date number_of_cds dollar_value\n1 19970101 1 2\n"
    )
    named = open_source(str(header))
    assert (named.event_type, cells(named)[0][0]) == ("purchase", 2)
    as_csv = write(tmp_path / "cd.csv", "00001,19970101,1,11.77\n")
    assert open_source(str(as_csv)).event_type == "purchase"


def test_headerless_files_need_their_columns_named(tmp_path: Path) -> None:
    path = write(tmp_path / "plain.txt", "17 20260302 3\n18 20260303 4\n")
    with pytest.raises(CommandError) as caught:
        open_source(str(path))
    assert "is data, not a header" in caught.value.message
    assert "--columns" in caught.value.message
    source = open_source(str(path), columns=["customer_id", "ts", "score"])
    assert source.event_type is None
    assert cells(source)[0] == (1, {"customer_id": "17", "ts": "20260302", "score": "3"}, None)
    # --columns also makes a first line with letters data, and works with --delimiter
    lettered = write(tmp_path / "l.txt", "ann;20260302;install\n")
    named = open_source(str(lettered), delimiter=";", columns=["customer_id", "ts", "type"])
    assert cells(named) == [(1, {"customer_id": "ann", "ts": "20260302", "type": "install"}, None)]
    with pytest.raises(CommandError):
        open_source(str(write(tmp_path / "x.jsonl", "{}\n")), columns=["a"])


def test_cdnow_rows_map_to_purchases_with_stable_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cd.txt",
        "00001 19970101 1 11.77\n00001 19970101 1 11.77\n00001 19970101 2 11.77\n",
    )
    settings = Settings(earliest_event_time="1997-01-01")  # type: ignore[arg-type]

    def mapped() -> list[dict[str, object]]:
        source = open_source(str(path))
        mapping = with_layout_type(Mapping(), source)
        rows = RowMapper(settings, mapping, resolve_columns(mapping, source.columns or []))
        return [json.loads(rows.map(row.data or {})[2]) for row in source.rows]

    first = mapped()
    assert [(e["customer_id"], e["type"], e["ts"], e["amount"]) for e in first] == [
        ("00001", "purchase", 852076800000, 11.77)
    ] * 3
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == 3  # identical rows stay distinct purchases
    assert [e["event_id"] for e in mapped()] == ids  # and keep their ids when fed again


# --- mapping and ids -----------------------------------------------------------------------


def mapper(**columns: str) -> RowMapper:
    return RowMapper(Settings(), Mapping(columns=columns), None)


def test_a_row_with_a_lone_surrogate_is_rejected_not_fatal() -> None:
    row = {"user": "ann\ud800", "time": "2026-03-02T10:00:00Z", "event": "session"}
    with pytest.raises(Rejected) as caught:
        mapper(customer_id="user").map(row)
    assert caught.value.reason == Reason.INVALID_ENCODING


def test_stable_ids_same_row_same_id_identical_rows_distinct() -> None:
    row = {"user": "ann", "time": "2026-03-02T10:00:00Z", "event": "session"}
    first, again = mapper(customer_id="user"), mapper(customer_id="user")
    a1 = json.loads(first.map(row)[2])["event_id"]
    a2 = json.loads(first.map(dict(row))[2])["event_id"]  # the same row twice in one input
    b1 = json.loads(again.map(row)[2])["event_id"]  # the input fed again
    other = json.loads(again.map({**row, "time": "2026-03-02T10:00:01Z"})[2])["event_id"]
    assert a1 == b1 and a1 != a2 and other not in (a1, a2)
    given = json.loads(first.map({**row, "event_id": "e-7"})[2])["event_id"]
    assert given == "e-7"


def test_segment_track_and_identify_calls_map_to_our_events() -> None:
    m = mapper()
    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2026-03-02T10:00:00Z",
        "properties": {"revenue": 19.5, "currency": "usd"},
        "context": {"os": {"name": "iOS"}},
    }
    customer, ts, value = m.map(order)
    event = json.loads(value)
    assert (customer, ts) == ("u1", ms(datetime(2026, 3, 2, 10, tzinfo=UTC)))
    assert event == {
        "event_id": "m1",
        "customer_id": "u1",
        "type": "purchase",
        "ts": ts,
        "amount": 19.5,
        "currency": "USD",
        "platform": "iOS",
    }
    # the device type before the OS name, UTM source as the channel, as the worker reads them
    context = {"device": {"type": "ios"}, "os": {"name": "iOS"}, "campaign": {"source": "nl"}}
    event = json.loads(m.map({**order, "context": context})[2])
    assert (event["platform"], event["channel"]) == ("ios", "nl")
    anon = {"type": "identify", "anonymousId": "a9", "messageId": "m2", "timestamp": "2026-03-02"}
    assert json.loads(m.map(anon)[2])["type"] == "identify"
    with pytest.raises(Rejected) as caught:
        m.map({**order, "type": "page"})
    assert caught.value.reason == Reason.INVALID_VALUE


def test_billing_periods_are_read_from_rows_and_segment_properties() -> None:
    row = {"user": "ann", "time": "2026-03-02T10:00:00Z", "event": "subscription_start"}
    plain = json.loads(mapper(customer_id="user").map(row)[2])
    assert "billing_period" not in plain
    yearly = json.loads(mapper(customer_id="user").map({**row, "interval": "yearly"})[2])
    assert yearly["billing_period"] == "yearly"
    # the id of a row without a billing period is what it was before the field was read
    assert (
        plain["event_id"]
        == "feed-"
        + hashlib.sha256(
            json.dumps(
                ["ann", "subscription_start", plain["ts"], None, None, None, None, None],
                separators=(",", ":"),
            ).encode()
        )
        .digest()[:16]
        .hex()
    )
    track = {
        "type": "track",
        "event": "Subscription Renewed",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2026-03-02T10:00:00Z",
        "properties": {"revenue": 99, "billing_period": "annual"},
    }
    assert json.loads(mapper().map(track)[2])["billing_period"] == "annual"
    with pytest.raises(Rejected) as caught:
        mapper().map({**track, "properties": {"interval": "weekly"}})
    assert caught.value.reason == Reason.INVALID_VALUE


def test_type_names_are_matched_forgivingly_but_typos_are_rejected() -> None:
    m = RowMapper(Settings(), Mapping(type_names={"Checkout": "purchase"}), None)
    base = {"customer_id": "c", "ts": "2026-03-02T10:00:00Z"}
    assert json.loads(m.map({**base, "type": "Checkout"})[2])["type"] == "purchase"
    assert json.loads(m.map({**base, "type": "App Open"})[2])["type"] == "app_open"
    assert json.loads(m.map({**base, "type": "Application Opened"})[2])["type"] == "app_open"
    with pytest.raises(Rejected) as caught:
        m.map({**base, "type": "purchsae"})
    assert caught.value.reason == Reason.UNKNOWN_TYPE


def test_pacer_rate_and_replay() -> None:
    now = [100.0]
    rate = Pacer(rate=50, clock=lambda: now[0])
    assert rate.delay(0, 0) == 0
    assert rate.delay(10, 0) == pytest.approx(0.2)
    now[0] = 100.5
    assert rate.delay(10, 0) == 0  # behind schedule: no wait
    now[0] = 0.0
    replay = Pacer(replay_speed=3600, clock=lambda: now[0])
    assert replay.delay(0, 1_000_000) == 0
    assert replay.delay(1, 1_000_000 + 7_200_000) == pytest.approx(2.0)  # two hours in 2 s
    assert replay.delay(2, 1_000_000 - 60_000) == 0  # out of order: at once


# --- the command on bad input (no Kafka needed: errors come first, or --dry-run) -----------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_file(tmp_path: Path) -> None:
    done = run_cli(["feed", str(tmp_path / "nope.csv")])
    assert done.returncode == 2 and "no such file" in said(done)


def test_empty_input_and_header_only(tmp_path: Path) -> None:
    done = run_cli(["feed", str(write(tmp_path / "e.csv", ""))])
    assert done.returncode == 2 and "is empty" in said(done)
    done = run_cli(["feed", "-"], input="")
    assert done.returncode == 2 and "stdin is empty" in said(done)
    header = write(tmp_path / "h.csv", "customer_id,ts,type\n")
    done = run_cli(["feed", str(header), "--dry-run"])
    assert done.returncode == 2 and "has no rows" in said(done)


def test_wrong_columns_name_what_is_there(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", "who,at,what\nann,2026-03-02T10:00:00Z,install\n")
    done = run_cli(["feed", str(path)])
    assert done.returncode == 2
    text = said(done)
    assert "no customer id and no event time and no event type column" in text
    assert "The columns are: who, at, what" in text and "--customer-col" in text
    done = run_cli(["feed", str(path), "--customer-col", "user"])
    assert done.returncode == 2 and "column 'user' (for customer_id) is not in the header" in said(
        done
    )
    named = ["--customer-col", "who", "--time-col", "at", "--type-col", "what"]
    ok = run_cli(["feed", str(path), "--dry-run", *named])
    assert ok.returncode == 0, ok.stderr


def test_bad_rows_are_kept_with_reasons_and_the_exit_code_says_so(tmp_path: Path) -> None:
    rows = [
        ("ann", "2026-03-02T10:00:00Z", "install", ""),
        ("ann", "03/02/2026", "session", ""),  # ambiguous date
        ("bob", "not a time", "session", ""),
        ("", "2026-03-02T10:00:00Z", "install", ""),
        ("bob", "2026-03-02T11:00:00Z", "purchsae", ""),
        ("bob", "2026-03-02T11:00:00Z", "purchase", "9,99"),
        ("bob", "2026-03-02T11:00:00Z", "purchase", "9.99"),
    ]
    path = tmp_path / "orders.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "ts", "type", "amount"])
        w.writerows(rows)
    done = run_cli(["feed", str(path), "--dry-run"])
    assert done.returncode == 1, done.stderr
    rejects = [
        json.loads(x) for x in (tmp_path / "orders.csv.rejects.jsonl").read_text().splitlines()
    ]
    assert [r["line"] for r in rejects] == [3, 4, 5, 6, 7]
    assert Counter(r["reason"] for r in rejects) == {
        "bad_timestamp": 2,
        "missing_field": 1,
        "unknown_type": 1,
        "wrong_type": 1,
    }
    # Nothing lost: every bad row is in the file as it came in; the good ones would be sent.
    assert [tuple(r["row"].values()) for r in rejects] == rows[1:6]
    text = said(done)
    assert "rows read │ 7" in text and "valid, would send │ 2" in text
    assert "--time-format" in text
    again = run_cli(
        ["feed", str(path), "--dry-run", "--allow-rejects", "--rejects", str(tmp_path / "r.jsonl")]
    )
    assert again.returncode == 0 and (tmp_path / "r.jsonl").exists()


def test_stdin_jsonl_segment_gz_and_json_array(tmp_path: Path) -> None:
    lines = [
        {
            "type": "track",
            "event": "Application Installed",
            "userId": "s1",
            "messageId": "m1",
            "timestamp": "2026-03-02T10:00:00Z",
        },
        {
            "batch": [
                {
                    "type": "track",
                    "event": "Application Opened",
                    "userId": "s1",
                    "messageId": "m2",
                    "timestamp": "2026-03-03T10:00:00Z",
                }
            ]
        },
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    done = run_cli(["feed", "-", "--dry-run", "--rejects", str(tmp_path / "r.jsonl")], input=text)
    assert done.returncode == 1
    (reject,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert reject == {
        "line": 3,
        "reason": "malformed_json",
        "detail": reject["detail"],
        "row": "not json",
    }
    packed = tmp_path / "export.json.gz"
    with gzip.open(packed, "wt") as f:
        json.dump([lines[0], lines[1]["batch"][0]], f)
    assert run_cli(["feed", str(packed), "--dry-run"]).returncode == 0


def test_option_mistakes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "customer_id,ts,type\nann,2026-03-02T10:00:00Z,install\n")
    for args, message in [
        (["--rate", "fast"], "--rate"),
        (["--rate", "5", "--replay-speed", "2"], "not both"),
        (["--map-type", "Checkout"], "THEIRS=OURS"),
        (["--type", "checkout"], "not an event type"),
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--format", "xml"], "--format"),
        (["--mapping", str(tmp_path / "none.toml")], "no such file"),
    ]:
        done = run_cli(["feed", str(path), "--dry-run", *args])
        assert done.returncode == 2, (args, done.stderr)
        assert message in said(done), (args, done.stderr)


def test_mapping_file(tmp_path: Path) -> None:
    write(
        tmp_path / "m.toml",
        'time_format = "%d.%m.%Y %H:%M"\ntimezone = "Europe/Berlin"\n'
        '[columns]\ncustomer_id = "who"\nts = "at"\n[types]\n"Checkout" = "purchase"\n',
    )
    data = write(tmp_path / "d.csv", "who;at;type\nann;02.03.2026 10:00;Checkout\n")
    done = run_cli(["feed", str(data), "--dry-run", "--mapping", str(tmp_path / "m.toml")])
    assert done.returncode == 0, done.stderr


def test_kafka_down_exits_3_and_sends_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "customer_id,ts,type\nann,2026-03-02T10:00:00Z,install\n")
    env = cli_env(RETENTION_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}")
    done = run_cli(["feed", str(path)], env, timeout=60)
    assert done.returncode == 3
    assert "cannot reach Kafka" in said(done) and "retention stack up" in said(done)
    assert not (tmp_path / "a.csv.rejects.jsonl").exists()


# --- round trip through the real stack -----------------------------------------------------


def csv_rows(events: list[dict], rng: random.Random) -> list[list[str]]:
    """Our events in someone else's CSV: other column names (platform as `os`, channel as
    `utm_source`), mixed time notations, no ids."""
    out = []
    for e in events:
        t = e["ts"] if isinstance(e["ts"], int) else ms(datetime.fromisoformat(e["ts"]))
        moment = datetime.fromtimestamp(t / 1000, tz=UTC)
        style = rng.randrange(4)
        if style == 0:
            when = str(t)  # epoch ms
        elif style == 1:
            when = f"{t / 1000:.3f}"  # epoch seconds with ms
        elif style == 2:
            when = moment.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]  # naive Berlin
        else:
            when = moment.isoformat(timespec="milliseconds")
        amount = "" if e.get("amount") is None else repr(e["amount"])  # exact
        out.append(
            [
                e["customer_id"],
                when,
                e["type"],
                amount,
                e.get("currency", ""),
                e.get("score", ""),
                e.get("platform", ""),
                e.get("channel", ""),
            ]
        )
    return out


@pytest.mark.integration
def test_csv_round_trip_matches_the_oracle_and_feeding_twice_changes_nothing(
    pipeline,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    p = pipeline()
    events = unique_events(generate_history(seed=515, customers=400, days=45))
    rng = random.Random(1)
    path = tmp_path / "export.csv"
    bad = [
        ["zoe", "31/02/2026", "session", "", "", "", "", ""],
        ["zoe", "2026-03-03T10:00:00Z", "purchsae", "", "", "", "", ""],
    ]
    rows = csv_rows(events, rng)
    rows[100:100] = bad
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "when", "action", "price", "cur", "nps", "os", "utm_source"])
        w.writerows(rows)
    env = cli_env(p)
    args = [
        "feed",
        str(path),
        "--customer-col",
        "user",
        "--time-col",
        "when",
        "--tz",
        "Europe/Berlin",
    ]
    args += [
        "--allow-rejects",
        "--amount-col",
        "price",
        "--currency-col",
        "cur",
        "--score-col",
        "nps",
    ]
    first = run_cli(args, env)
    assert first.returncode == 0, first.stderr
    assert "events/s" in first.stderr
    rejects = [
        json.loads(x) for x in (tmp_path / "export.csv.rejects.jsonl").read_text().splitlines()
    ]
    assert [r["line"] for r in rejects] == [102, 103]
    p.wait_until_consumed()
    expected = compute(events, OracleSettings())
    got = flatten(p.scrape_text(), COMPARED)
    assert not diff(expected, got), diff(expected, got)

    # Fed again (and a slice of it at a capped rate): every number stays the same.
    again = run_cli(args, env)
    assert again.returncode == 0, again.stderr
    head = tmp_path / "head.csv"
    head.write_text("\n".join(path.read_text().splitlines()[:61]) + "\n")
    started = time.monotonic()
    paced = run_cli([*args[:1], str(head), *args[2:], "--rate", "100/s"], env)
    assert paced.returncode == 0, paced.stderr
    assert time.monotonic() - started >= 0.55  # 60 rows at 100/s take at least 0.59 s
    p.wait_until_consumed()
    assert not diff(expected, flatten(p.scrape_text(), COMPARED))


# --- a 1997 purchase history through the real stack ------------------------------------------

HISTORY_FROM = "1996-12-01"  # RETENTION_EARLIEST_EVENT_TIME for replaying 1997 on purpose


def cdnow_lines(rng: random.Random, customers: int = 60) -> list[str]:
    """CDNOW's layout, `customer_id date number_of_cds dollar_value`, space separated with
    uneven spacing: a few purchases per customer across 1997 and early 1998, identical
    lines now and then (two equal purchases on one day) and some zero-value rows."""
    lines = []
    for n in range(1, customers + 1):
        day = datetime(1997, 1, 1) + timedelta(days=rng.randrange(90))
        for _ in range(rng.randint(1, 9)):
            cds = rng.randint(1, 6)
            value = 0.0 if rng.random() < 0.03 else round(cds * rng.uniform(8, 16), 2)
            gap = " " * rng.randint(1, 3)
            lines.append(f"{n:05d}{gap}{day:%Y%m%d}{gap}{cds}{gap}{value:.2f}")
            if rng.random() < 0.05:
                lines.append(lines[-1])
            day += timedelta(days=rng.choice([0, 3, 20, 45, 120]))
            if day.year > 1998 or (day.year == 1998 and day.month > 6):
                break
    rng.shuffle(lines)  # delivery order is not time order
    return lines


def cdnow_events(lines: list[str]) -> list[dict[str, object]]:
    """The oracle's reading of the file, from CDNOW's layout: one purchase per line of
    dollar_value, on the date's UTC midnight, by the customer id as written."""
    events: list[dict[str, object]] = []
    for i, line in enumerate(lines):
        customer, day, _cds, value = line.split()
        when = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
        events.append(
            {
                "event_id": f"line-{i}",
                "customer_id": customer,
                "type": "purchase",
                "ts": when.isoformat(),
                "amount": float(value),
            }
        )
    return events


@pytest.mark.integration
def test_a_cdnow_history_feeds_as_purchases_and_again_changes_nothing(
    pipeline,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    lines = cdnow_lines(random.Random(1997))
    assert 250 <= len(lines) <= 500 and len(set(lines)) < len(lines)
    path = tmp_path / "CDNOW_sample.txt"
    path.write_text("\n".join(lines) + "\n")
    p = pipeline(extra_env={"RETENTION_EARLIEST_EVENT_TIME": HISTORY_FROM})
    env = cli_env(p)
    first = run_cli(["feed", str(path)], env)
    assert first.returncode == 0, first.stderr
    assert "CDNOW layout" in said(first) and f"sent (confirmed by Kafka) │ {len(lines)}" in said(
        first
    )
    p.wait_until_consumed()
    expected = compute(cdnow_events(lines), OracleSettings())
    customers = {line.split()[0] for line in lines}
    assert expected[key("retention_customers")] == len(customers)  # leading zeros kept
    assert expected[key("retention_purchases_total")] == len(lines)
    got = flatten(p.scrape_text(), COMPARED)
    assert not diff(expected, got), diff(expected, got)
    assert {"00001", "00060"} <= customers

    again = run_cli(["feed", str(path)], env)
    assert again.returncode == 0, again.stderr
    p.wait_until_consumed()
    assert not diff(expected, flatten(p.scrape_text(), COMPARED))

    # A worker left at the default earliest time dead-letters every row, with the reason
    # (the feed itself, told the history is wanted, sends them).
    strict = pipeline()
    sent = run_cli(["feed", str(path)], cli_env(strict, RETENTION_EARLIEST_EVENT_TIME=HISTORY_FROM))
    assert sent.returncode == 0, sent.stderr
    strict.wait_until_consumed()
    dead = [json.loads(r.value) for r in strict.consume_dlq(len(lines))]
    assert len(dead) == len(lines)
    assert {d["reason"] for d in dead} == {"ts_out_of_range"}
    assert "before 2000-01-01T00:00:00Z (RETENTION_EARLIEST_EVENT_TIME)" in dead[0]["detail"]
    scraped = strict.scrape(
        frozenset({"retention_events_invalid_total", "retention_revenue_total"})
    )
    assert scraped == {key("retention_events_invalid_total", reason="ts_out_of_range"): len(lines)}
    # and the feed at the default refuses them up front, into the rejects file
    refused = run_cli(["feed", str(path), "--dry-run"], cli_env())
    assert refused.returncode == 1
    rejects = (tmp_path / "CDNOW_sample.txt.rejects.jsonl").read_text().splitlines()
    assert {json.loads(r)["reason"] for r in rejects} == {"ts_out_of_range"}
    assert len(rejects) == len(lines)
