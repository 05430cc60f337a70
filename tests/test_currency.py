"""The reporting currency's settings: the rate table's notations and every way to get it
wrong, and which of them the state's settings fingerprint holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from streams.guard import differences, fingerprint


def problem(**values: object) -> tuple[str, str]:
    """(setting, message) of the one error these settings raise."""
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    (error,) = caught.value.errors()
    return str(error["loc"][0]), error["msg"]


def test_defaults_report_in_usd_with_no_other_currency() -> None:
    s = Settings()
    assert (s.currency, s.currency_rates) == ("USD", {"USD": 1.0})


def test_inline_rates_in_any_case_and_spacing() -> None:
    s = Settings(currency="eur", currency_rates=" usd=0.92 , JPY = 0.0062,")  # type: ignore[arg-type]
    assert s.currency == "EUR"
    assert s.currency_rates == {"USD": 0.92, "JPY": 0.0062, "EUR": 1.0}
    # the reporting currency may be listed, at 1
    assert Settings(currency_rates="USD=1,EUR=1.08").currency_rates == {  # type: ignore[arg-type]
        "USD": 1.0,
        "EUR": 1.08,
    }


def test_rates_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_CURRENCY", "gbp")
    monkeypatch.setenv("RETENTION_CURRENCY_RATES", "EUR=0.86,USD=0.79")
    s = Settings()
    assert (s.currency, s.currency_rates) == ("GBP", {"EUR": 0.86, "USD": 0.79, "GBP": 1.0})


@pytest.mark.parametrize(
    ("values", "setting", "message"),
    [
        ({"currency": "EURO"}, "currency", "'EURO' is not a currency code"),
        ({"currency": "€€€"}, "currency", "is not a currency code"),
        ({"currency_rates": "EUR"}, "currency_rates", "write CODE=RATE"),
        ({"currency_rates": "EU=1.1"}, "currency_rates", "'EU' is not a currency code"),
        ({"currency_rates": "EUR=abc"}, "currency_rates", "rate of EUR: 'abc' is not a number"),
        ({"currency_rates": "EUR=0"}, "currency_rates", "must be a finite number above 0"),
        ({"currency_rates": "EUR=-1.08"}, "currency_rates", "must be a finite number above 0"),
        ({"currency_rates": "EUR=inf"}, "currency_rates", "must be a finite number above 0"),
        ({"currency_rates": "EUR=nan"}, "currency_rates", "must be a finite number above 0"),
        ({"currency_rates": "EUR=1.08,eur=1.1"}, "currency_rates", "EUR is given twice"),
        ({"currency_rates": "USD=1.1"}, "currency_rates", "its rate is 1, not 1.1"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    values: dict[str, object], setting: str, message: str
) -> None:
    where, text = problem(**values)
    assert where == setting
    assert message in text


def test_rate_files_json_and_csv(tmp_path: Path) -> None:
    as_json = tmp_path / "rates.json"
    as_json.write_text(json.dumps({"eur": 1.08, "JPY": "0.0067"}))
    assert Settings(currency_rates_file=as_json).currency_rates == {
        "EUR": 1.08,
        "JPY": 0.0067,
        "USD": 1.0,
    }
    as_csv = tmp_path / "rates.csv"
    as_csv.write_text(
        "currency,rate\n# from the finance sheet, 2026-03-01\nEUR, 1.08\n\nchf,1.13\n"
    )
    s = Settings(currency_rates_file=as_csv, currency_rates="JPY=0.0067")  # type: ignore[arg-type]
    assert s.currency_rates == {"EUR": 1.08, "CHF": 1.13, "JPY": 0.0067, "USD": 1.0}


def test_bad_rate_files_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "none.csv"
    assert problem(currency_rates_file=missing)[0] == "currency_rates_file"
    cases = {
        "a.json": ("[1, 2]", "write one JSON object"),
        "b.json": ("{oops", "not JSON"),
        "c.json": ('{"EUR": true}', "rate of EUR: True is not a number"),
        "d.csv": ("EUR;1.08\n", "line 1: write CODE,RATE"),
        "e.csv": ("EUR,1.08\nEUR,1.09\n", "EUR is given twice"),
        "f.csv": ("EUR,0\n", "must be a finite number above 0"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        where, said = problem(currency_rates_file=path)
        assert (where, message in said) == ("currency_rates_file", True), (name, said)
    one = tmp_path / "one.csv"
    one.write_text("EUR,1.08\n")
    where, said = problem(currency_rates_file=one, currency_rates="EUR=1.1")
    assert where == "currency_rates" and "EUR given both" in said


def test_the_reporting_currency_is_in_the_fingerprint_the_rates_are_not() -> None:
    usd = fingerprint(Settings())
    assert differences(usd, Settings(currency_rates="EUR=1.08")) == []  # type: ignore[arg-type]
    assert differences(usd, Settings(currency="EUR")) == [
        '  RETENTION_CURRENCY: stored "USD", now "EUR"'
    ]


def test_the_earliest_event_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().earliest_event_ms == 946_684_800_000  # 2000-01-01T00:00:00Z
    for text in ("1997-01-01", "19970101", "1997-01-01T00:00:00Z", "1997-01-01T01:00:00+01:00"):
        monkeypatch.setenv("RETENTION_EARLIEST_EVENT_TIME", text)
        assert Settings().earliest_event_ms == 852_076_800_000, text
    monkeypatch.delenv("RETENTION_EARLIEST_EVENT_TIME")
    assert problem(earliest_event_time="19970231")[1].endswith("is not an ISO 8601 date or time")
    assert "is not an ISO 8601" in problem(earliest_event_time=19970101)[1]  # not epoch seconds
    assert problem(earliest_event_time="1969-07-20")[1].endswith("must be 1971-01-01 or later")
