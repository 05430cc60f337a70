"""RFM scores and named segments, evaluated at a day (the exporter's evaluation day, or
the day of a lifecycle change).

The worker stores each customer's last purchase day, frequency and monetary scores and
first activity day; recency depends on the day of evaluation, so segments are decided
here, by the rules of docs/definitions.md "RFM segments".
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from typing import NamedTuple

SEGMENTS = (
    "new",
    "no_purchase",
    "vip",
    "pre_vip",
    "loyal",
    "at_risk",
    "lost",
    "hibernating",
    "promising",
)


class RfmKey(NamedTuple):
    """What a customer's segment depends on besides the day: None for a customer without
    purchases, and for a first day too long ago to be new at any evaluation day."""

    last_purchase: int | None
    frequency: int
    monetary: int
    first: int | None


class RfmThresholds(NamedTuple):
    """RETENTION_RFM_RECENCY_DAYS and RETENTION_RFM_NEW_DAYS: the score thresholds that
    apply at evaluation time (F and M are scored by the worker)."""

    recency_days: tuple[int, ...]
    new_days: int


def recency_score(days_since: int, thresholds: tuple[int, ...]) -> int:
    """5 for the most recent band, down to 1 past the last threshold."""
    for index, limit in enumerate(thresholds):
        if days_since <= limit:
            return 5 - index
    return 1


def threshold_score(value: float, thresholds: tuple[int, ...]) -> int:
    """F and M scores: 1 plus the number of thresholds the value reaches (they are sorted)."""
    return 1 + bisect_right(thresholds, value)


def segment(r: int, f: int, m: int) -> str:
    """The segment of a purchasing customer who is not new: first matching rule wins,
    most valuable first."""
    if r >= 4 and f >= 4 and m >= 4:
        return "vip"
    if r >= 3 and f >= 3 and m >= 3:
        return "pre_vip"
    if r >= 3 and f >= 2:
        return "loyal"
    if r <= 2 and (f >= 3 or m >= 3):
        return "at_risk"
    if r == 1:
        return "lost"
    if r == 2:
        return "hibernating"
    return "promising"


def customer_segment(key: RfmKey, day: int, rules: RfmThresholds) -> str:
    """A customer's segment at the end of `day` (their first day is at most `day`)."""
    if key.first is not None and day - key.first < rules.new_days:
        return "new"
    if key.last_purchase is None:
        return "no_purchase"
    r = recency_score(max(0, day - key.last_purchase), rules.recency_days)
    return segment(r, key.frequency, key.monetary)


def count_segments(keys: Counter[RfmKey], today: int, rules: RfmThresholds) -> Counter[str]:
    """Customers per segment at `today`, every segment present (zeros included)."""
    counts: Counter[str] = Counter(dict.fromkeys(SEGMENTS, 0))
    for key, n in keys.items():
        if key.first is not None and key.first > today:
            continue  # first seen after the evaluation day: not scored yet
        counts[customer_segment(key, today, rules)] += n
    return counts
