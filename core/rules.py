"""Domain rules every reader shares: the activity windows and the churn formulas.

The exporter's gauges and the report's churn history compute churn and CRR here, so
the newest point of the history always equals the gauges.
"""

from __future__ import annotations

# Trailing windows (days) of the active-customer counts; the worker keeps one counter
# per window and day, the exporter serves each, stickiness is the first over the last.
ACTIVITY_WINDOWS = (1, 7, 30)


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None (left out of the export) when it is 0."""
    return numerator / denominator if denominator else None


def lost(base_start: int, stayed: int) -> int:
    """Customers of the start base who are not in the end base."""
    return base_start - stayed


def churn_ratio(lost: int, base_start: int) -> float | None:
    """Churn of a period: lost customers / base at its start."""
    return ratio(lost, base_start)


def crr(base_start: int, base_end: int, new: int) -> float | None:
    """Customer retention rate: (end base - new customers) / start base."""
    return ratio(base_end - new, base_start)
