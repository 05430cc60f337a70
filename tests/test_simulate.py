"""`retention simulate`: deterministic, does what its parameters say, and its ground truth is
exactly what the tracker measures from the events it sent."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from tests.broker import scratch_name
from tests.cli_fixtures import (
    SIM_ARGS,
    SimRun,
    cli_env,
    closed_port,
    delete_topic,
    run_cli,
    sim_run,
)
from tests.oracle import OracleSettings, compute, flatten, key
from tests.services import KAFKA

__all__ = ["sim_run"]  # the fixture, imported for pytest


def no_send(tmp_path: Path, *args: str) -> dict:
    done = run_cli(["simulate", "--no-send", "--out", str(tmp_path), *args])
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "truth.json").read_text())


# --- without the stack ---------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_events(tmp_path: Path) -> None:
    no_send(tmp_path / "a", *SIM_ARGS)
    no_send(tmp_path / "b", *SIM_ARGS)
    other = [*SIM_ARGS]
    other[1] = "12"
    no_send(tmp_path / "c", *other)
    for name in ("events.jsonl", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (
        tmp_path / "c" / "events.jsonl"
    ).read_bytes()


def test_events_are_valid_time_ordered_and_match_their_truth(tmp_path: Path) -> None:
    truth = no_send(tmp_path, *SIM_ARGS)
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    assert len({e["event_id"] for e in events}) == len(events)
    realized = truth["realized"]
    assert realized["events"] == len(events)
    # counted as the exporter counts them (docs/definitions.md), by the oracle
    counted = compute(events, OracleSettings(tz=truth["timezone"]))
    by_type = {k[1][0][1]: n for k, n in counted.items() if k[0] == "retention_events_total"}
    assert realized["events_by_type"] == by_type
    assert sum(Counter(e["type"] for e in events).values()) == len(events)
    assert {"install", "session", "purchase", "subscription_start", "nps", "uninstall"} <= set(
        realized["events_by_type"]
    )
    assert all(0 <= e["score"] <= 10 for e in events if e["type"] == "nps")
    assert all(e["amount"] > 0 and e["currency"] == "USD" for e in events if "amount" in e)
    assert {e["platform"] for e in events} == {"ios", "android", "web"}
    first = min(stamps)[:10]
    last = max(stamps)[:10]
    assert first == "2026-02-23" and last == "2026-04-03"


def test_realized_retention_follows_the_intended_curve(tmp_path: Path) -> None:
    """Shop profile, no churn hazard: day-k retention is the curve's p(k), within sampling noise."""
    truth = no_send(
        tmp_path,
        *("--seed", "5", "--days", "30", "--installs", "400", "--start", "2026-01-05"),
        *("--profile", "shop", "--hazard", "0", "--curve", "power:0.5:0.7"),
    )
    curve = {p["offset"]: p for p in truth["realized"]["curve"]["day"]}
    for k in (1, 2, 3, 7, 14):
        p = 0.5 * k**-0.7
        assert truth["intended"]["p_return_by_day_offset"][k] == pytest.approx(p, abs=1e-6)
        n = curve[k]["size"]
        assert abs(curve[k]["ratio"] - p) < 4 * math.sqrt(p * (1 - p) / n), (k, curve[k], p)


def test_weekly_seasonality_and_churn_spike(tmp_path: Path) -> None:
    truth = no_send(
        tmp_path,
        *("--seed", "3", "--days", "28", "--installs", "300", "--start", "2026-01-05"),
        *("--weekly", "0.5", "--hazard", "0.02", "--churn-spike", "2026-01-20:10"),
    )
    installs = truth["realized"]["new_customers_by_day"]
    by_weekday: dict[int, list[int]] = {}
    for day, n in installs.items():
        by_weekday.setdefault(date.fromisoformat(day).weekday(), []).append(n)
    weekend = statistics.mean(by_weekday[5] + by_weekday[6])
    midweek = statistics.mean(by_weekday[1] + by_weekday[2])
    assert weekend > 1.5 * midweek
    churned = truth["churned_for_good_by_day"]
    others = [n for d, n in churned.items() if d != "2026-01-20"]
    assert churned["2026-01-20"] > 5 * statistics.median(others)
    assert truth["intended"]["churn_spikes"] == {"2026-01-20": 10.0}


def test_presets_give_starting_values_and_given_options_win(tmp_path: Path) -> None:
    sample = no_send(tmp_path / "sample", "--preset", "sample", "--start", "2026-01-05")
    assert sample["days"] == 42 and 350 < sample["realized"]["customers"] < 650
    args = ("--preset", "varied", "--days", "20", "--customers", "300", "--start", "2026-01-05")
    varied = no_send(tmp_path / "varied", *args)
    assert varied["days"] == 20 and varied["profile"] == "varied"
    assert varied["realized"]["customers"] == 300
    events = [
        json.loads(x) for x in (tmp_path / "varied" / "events.jsonl").read_text().splitlines()
    ]
    counted = compute(events, OracleSettings(tz=varied["timezone"]))
    by_type = {k[1][0][1]: n for k, n in counted.items() if k[0] == "retention_events_total"}
    assert varied["realized"]["events_by_type"] == by_type
    assert {"refund", "subscription_cancel", "uninstall"} <= set(by_type)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2999-01-01"], "ends after today"),
        (["--start", "yesterday"], "not a date"),
        (["--curve", "linear:1"], "--curve"),
        (["--churn-spike", "5"], "DAY:FACTOR"),
        (["--churn-spike", "2026-09-01:3", "--start", "2026-01-01", "--days", "10"], "outside"),
        (["--profile", "bank"], "--profile"),
        (["--preset", "huge"], "--preset"),
        (["--live", "--start", "2026-01-01"], "--live starts today"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli(["simulate", "--no-send", "--out", str(tmp_path), *args])
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "events.jsonl").exists()


def test_kafka_down_exits_3_and_keeps_the_files(tmp_path: Path) -> None:
    env = cli_env(RETENTION_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}")
    done = run_cli(["simulate", *SIM_ARGS, "--out", str(tmp_path)], env, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "cannot reach Kafka" in done.stderr and "retention stack up" in done.stderr
    assert (tmp_path / "events.jsonl").stat().st_size > 0
    assert (tmp_path / "truth.json").exists()


# --- through the real stack ----------------------------------------------------------------


@pytest.mark.integration
def test_tracker_measures_exactly_the_ground_truth(sim_run: SimRun) -> None:
    """'Agrees' means equal: the truth is the realized retention of exactly the events sent."""
    realized = sim_run.truth["realized"]
    got = flatten(sim_run.pipeline.scrape_text())
    assert got[key("retention_customers")] == realized["customers"]
    assert got[key("retention_watermark_seconds")] * 1000 == pytest.approx(
        realized["watermark_ms"], abs=0.5
    )
    for window, count in realized["active"].items():
        assert got[key("retention_active_customers", window=window)] == count
    for kind, count in realized["events_by_type"].items():
        assert got[key("retention_events_total", type=kind)] == count
    expected: dict = {}
    for period, cohorts in realized["cohorts"].items():
        for cohort in list(cohorts)[-12:]:  # the exporter keeps the 12 newest cohorts
            cell = cohorts[cohort]
            lab = {"cohort_period": period, "cohort": cohort}
            expected[key("retention_cohort_size", **lab)] = cell["size"]
            for k, n in enumerate(cell["retained"]):
                expected[key("retention_cohort_retained", offset=str(k), **lab)] = n
                expected[key("retention_cohort_ratio", offset=str(k), **lab)] = n / cell["size"]
    cohort_series = {
        k: v
        for k, v in got.items()
        if k[0] in ("retention_cohort_size", "retention_cohort_retained", "retention_cohort_ratio")
    }
    assert cohort_series == expected
    assert len(expected) > 150  # the comparison covers day, week and month cohorts


@pytest.mark.integration
def test_live_mode_sends_in_real_time(tmp_path: Path, stack: None) -> None:
    """--live sends each event when the wall clock reaches its time; truth covers what was sent."""
    topic = scratch_name("events-live-")
    env = cli_env(RETENTION_EVENTS_TOPIC=topic, RETENTION_KAFKA_BOOTSTRAP=KAFKA)
    started = time.time()
    args = ["simulate", "--live", "--days", "1", "--installs", "600000", "--duration", "3"]
    done = run_cli([*args, "--seed", "2", "--out", str(tmp_path)], env)
    took = time.time() - started
    try:
        assert done.returncode == 0, done.stderr
        events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
        truth = json.loads((tmp_path / "truth.json").read_text())
        assert len(events) > 3 and truth["realized"]["events"] == len(events)
        stamps = [datetime.fromisoformat(e["ts"]).timestamp() for e in events]
        assert min(stamps) >= started - 1 and max(stamps) <= started + took + 1
        assert took < 30
    finally:
        delete_topic(topic)
