"""Amounts in the one reporting currency, as docs/definitions.md ("Money") defines them.

An event's amount is written in its `currency` (compared case-insensitively; none means
the reporting currency). It is worth amount x rate units of the reporting currency, the
rate being the reporting currency's units per unit of the event's currency (1 for the
reporting currency itself), then rounded to thousandths. An event naming a currency
that has no rate is dead-lettered, so it is in no total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.oracle.basics import OracleSettings


def rate(event: Mapping[str, Any], s: OracleSettings) -> float | None:
    """Reporting-currency units per unit of the event's currency; None when unknown."""
    code = str(event.get("currency") or s.currency).upper()
    if code == s.currency.upper():
        return 1.0
    return {c.upper(): r for c, r in s.rates}.get(code)


def milli(event: Mapping[str, Any], s: OracleSettings) -> int:
    """The event's amount in thousandths of the reporting currency (missing = 0)."""
    r = rate(event, s)
    assert r is not None, f"{event} names a currency without a rate: it is dead-lettered"
    return round(float(event.get("amount") or 0) * r * 1000)
