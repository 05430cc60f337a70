"""Independent, obviously-correct computation of every exported number.

Straight from docs/definitions.md with sets and loops, no incremental tricks. Output
is a flat dict {(sample_name, ((label, value), ...sorted)): value} — the same shape
`flatten()` gives for a scrape, so a comparison is one dict equality.

Money is handled as integer thousandths ("milli") of the reporting currency: each event's
amount is converted and rounded with round(amount * rate * 1000) (money.py), sums are
exact integers, and an exported amount is milli / 1000.

The events are read once into a ledger (ledger.py); each metric family derives its
samples from it: activity.py (customers, cohorts, lifecycle, churn), value.py
(purchases, CLV, subscriptions) and segments.py (NPS, churn tenures, RFM, breakdowns by
platform and channel). scrape.py reads a scrape into the same shape and compares. The
oracle imports nothing of the tracker it checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

from tests.oracle.activity import (
    LIFECYCLE_STATES,
    active_so_far,
    base_change,
    churn,
    cohorts,
    customers,
    lifecycle,
)
from tests.oracle.basics import EventLike, Key, OracleSettings, key, pure_activity, ts_ms
from tests.oracle.ledger import read_ledger
from tests.oracle.periods import PERIODS, evaluation_day, local_day
from tests.oracle.scrape import COMPARED, QUOTIENTS, diff, flatten, flatten_all, kept_values
from tests.oracle.segments import RFM_SEGMENTS, breakdowns, churn_tenures, nps, rfm
from tests.oracle.value import clv, period_repeat, purchases, subscribers, subscription_churn

__all__ = [
    "COMPARED",
    "LIFECYCLE_STATES",
    "QUOTIENTS",
    "RFM_SEGMENTS",
    "Key",
    "OracleSettings",
    "compute",
    "diff",
    "evaluation_day",
    "flatten",
    "flatten_all",
    "kept_values",
    "key",
    "local_day",
    "pure_activity",
    "ts_ms",
]


DEFAULTS = OracleSettings()  # the tracker's default settings


def compute(
    events: Sequence[EventLike],
    s: OracleSettings = DEFAULTS,
    kept: Mapping[str, Sequence[str]] | None = None,
) -> dict[Key, float]:
    """Every exported number for these delivered (valid) events; duplicates allowed.

    `kept`: the platform and channel values the tracker kept, when more than the cap were
    met in events consumed from several partitions (see segments.dimension_values)."""
    book = read_ledger(events, s)
    out: dict[Key, float] = {
        key("retention_events_total", type=name): n for name, n in book.types.items()
    }
    if book.max_ts is None:
        return out
    watermark_ms = book.max_ts - s.allowed_lateness_seconds * 1000
    out[key("retention_watermark_seconds")] = watermark_ms / 1000
    T = local_day(watermark_ms, ZoneInfo(s.tz))
    C = evaluation_day(T)  # every family below is evaluated at the end of C

    out.update(customers(book, C))
    out.update(active_so_far(book, T))
    changes = {kind: base_change(book, C, kind) for kind in PERIODS}
    for kind in PERIODS:
        out.update(cohorts(book, C, kind))
        out.update(lifecycle(book, C, kind))
        out.update(churn(changes[kind]))
        out.update(subscription_churn(book, C, kind))
        out.update(period_repeat(book, C, kind))
    out.update(purchases(book))
    out.update(clv(book, C))
    out.update(subscribers(book, C))
    out.update(nps(book, C))
    out.update(churn_tenures(book, C))
    out.update(rfm(book, C))
    out.update(breakdowns(book, C, kept))
    return out
