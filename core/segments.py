"""RFM scores and named segments, evaluated at the watermark day.

The worker stores each customer's last activity day and frequency/monetary scores;
recency depends on the watermark, so segments are decided here at scrape time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

SEGMENTS = ("new", "vip", "pre_vip", "loyal", "at_risk", "lost", "hibernating", "active")


def recency_score(days_since: int, thresholds: tuple[int, ...]) -> int:
    """5 for the most recent band, down to 1 past the last threshold."""
    for index, limit in enumerate(thresholds):
        if days_since <= limit:
            return 5 - index
    return 1


def threshold_score(value: float, thresholds: tuple[int, ...]) -> int:
    """F and M scores: 1 plus the number of thresholds the value reaches (they are sorted)."""
    return 1 + bisect_right(thresholds, value)


def segment(r: int, f: int, m: int, is_new: bool) -> str:
    """First matching rule wins, most valuable first."""
    if is_new:
        return "new"
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
    return "active"


def count_segments(
    keys: Counter[tuple[int, int, int, int | None]],
    today: int,
    recency_days: tuple[int, ...],
    new_days: int,
) -> Counter[str]:
    """Customers per segment from (last day, F score, M score, first day or None) keys."""
    counts: Counter[str] = Counter(dict.fromkeys(SEGMENTS, 0))
    for (last, frequency, monetary, first), n in keys.items():
        if first is not None and first > today:
            continue  # first seen after the watermark: not scored yet
        is_new = first is not None and today - first < new_days
        r = recency_score(max(0, today - last), recency_days)
        counts[segment(r, frequency, monetary, is_new)] += n
    return counts
