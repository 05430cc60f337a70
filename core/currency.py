"""The reporting currency's rate table: parsed from settings text or a small file, checked.

A rate is how many units of the reporting currency one unit of another currency is
worth (RETENTION_CURRENCY=USD, `EUR=1.08`: 1 EUR = 1.08 USD). Every code is three
letters, upper-cased; every rate is a finite number above zero.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

CODE = re.compile(r"^[A-Za-z]{3}$")
# the optional first line of a CSV rate file
CSV_HEADER = ("currency", "rate")

Rates = dict[str, float]


def currency_code(text: str) -> str:
    """An ISO 4217 code in upper case; codes are matched case-insensitively."""
    code = text.strip()
    if not CODE.match(code):
        raise ValueError(f"{text!r} is not a currency code: write three letters, e.g. USD")
    return code.upper()


def rate_value(code: str, value: object) -> float:
    """A rate as a finite float above zero, or a message naming the currency."""
    if isinstance(value, bool):
        raise ValueError(f"rate of {code}: {value!r} is not a number")
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"rate of {code}: {value!r} is not a number") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate of {code}: {value!r} must be a finite number above 0")
    return rate


def build_rates(pairs: Iterable[tuple[str, object]], where: str) -> Rates:
    """A table from (code, rate) pairs; a code given twice is an error, not a silent pick."""
    table: Rates = {}
    for raw_code, raw_rate in pairs:
        code = currency_code(raw_code)
        if code in table:
            raise ValueError(f"{where}: {code} is given twice")
        table[code] = rate_value(code, raw_rate)
    return table


def parse_rates_text(text: str) -> Rates:
    """`EUR=1.08,JPY=0.0067` (spaces allowed, empty = no rates)."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        code, sep, rate = part.partition("=")
        if not sep:
            raise ValueError(f"{part.strip()!r}: write CODE=RATE, e.g. EUR=1.08")
        pairs.append((code, rate.strip()))
    return build_rates(pairs, "RETENTION_CURRENCY_RATES")


def read_rates_file(path: Path) -> Rates:
    """A JSON object {"EUR": 1.08, ...}, or CSV lines `EUR,1.08` (header `currency,rate`
    and `#` comment lines allowed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    where = str(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f'{where}: write one JSON object, e.g. {{"EUR": 1.08}}')
        return build_rates(data.items(), where)
    return build_rates(_csv_pairs(text, where), where)


def _csv_pairs(text: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        cells = tuple(cell.strip() for cell in line.split(","))
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if number == 1 and tuple(c.lower() for c in cells) == CSV_HEADER:
            continue
        if len(cells) != 2:
            raise ValueError(f"{where} line {number}: write CODE,RATE, e.g. EUR,1.08")
        pairs.append((cells[0], cells[1]))
    return pairs


def merge_rates(
    reporting: str, inline: Mapping[str, float], from_file: Mapping[str, float]
) -> Rates:
    """One table from both sources, with the reporting currency at 1; a code in both
    sources, or a reporting-currency rate other than 1, is an error."""
    both = sorted(inline.keys() & from_file.keys())
    if both:
        raise ValueError(
            f"{', '.join(both)} given both in RETENTION_CURRENCY_RATES and in "
            "RETENTION_CURRENCY_RATES_FILE; keep each rate in one place"
        )
    table = {**from_file, **inline}
    own = table.get(reporting, 1.0)
    if own != 1.0:
        raise ValueError(
            f"{reporting} is the reporting currency (RETENTION_CURRENCY), so its rate is 1, "
            f"not {own:g}"
        )
    table[reporting] = 1.0
    return table
