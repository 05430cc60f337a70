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
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.settings import Settings
from retention.mapping import Mapping, RowMapper, parse_time
from retention.produce import Pacer
from streams.events import Reason, Rejected
from tests.cli_fixtures import cli_env, closed_port, run_cli
from tests.history import generate_history, unique_events
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten

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
    ],
)
def test_unparsable_times_are_rejected_with_a_hint(value: object, fmt: str | None) -> None:
    with pytest.raises(Rejected) as caught:
        parse_time(value, fmt, UTC)
    assert caught.value.reason == Reason.BAD_TIMESTAMP


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
