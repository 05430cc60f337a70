"""Domain rules every reader shares: the activity windows and the churn formulas.

The exporter's gauges and the report's churn history compute churn and CRR here, so
the newest point of the history always equals the gauges.
"""

from __future__ import annotations

# Trailing windows (days) of the active-customer counts; the worker keeps one counter
# per window and day, the exporter serves each, stickiness is the first over the last.
ACTIVITY_WINDOWS = (1, 7, 30)
# The CLV lifespan pools the churn of this many complete months before the watermark's.
LIFESPAN_MONTHS = 3


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None (left out of the export) when it is 0."""
    return numerator / denominator if denominator else None


def lost(base_start: int, stayed: int) -> int:
    """Customers of the start base who are not in the end base."""
    return base_start - stayed


def churn_ratio(lost: int, base_start: int) -> float | None:
    """Churn of a period: lost customers / base at its start."""
    return ratio(lost, base_start)


def retained_share(base_start: int, stayed: int) -> float | None:
    """Share of the start base still in the base at the period's end: |S and E| / S."""
    return ratio(stayed, base_start)


def pooled_churn(periods: list[tuple[int, int]]) -> float | None:
    """Churn of several periods pooled: sum of lost / sum of start bases, from
    (lost, base at start) pairs; None when no period has a base at its start."""
    return ratio(sum(lost for lost, _ in periods), sum(start for _, start in periods))


def crr(base_start: int, base_end: int, new: int) -> float | None:
    """Customer retention rate: (end base - new customers) / start base."""
    return ratio(base_end - new, base_start)
