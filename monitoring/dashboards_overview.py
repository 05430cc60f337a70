"""Retention overview: active customers, stickiness, retention and churn at a glance.

Counts are summed over exporter replicas (`sum`); ratios the exporter computes itself
are read with `max` (every replica exports the same value; never average a ratio);
ratios of counts come from the recording rules (monitoring/rules.py).
"""

from __future__ import annotations

from monitoring.board import Board
from monitoring.config import OVERVIEW
from monitoring.panels import (
    PERCENT,
    Look,
    Query,
    barchart_panel,
    stat_panel,
    timeseries_panel,
)
from monitoring.variables import breakdown_picker

SMALL = Look(width=4, height=4)
SMALL_PERCENT = Look(width=4, height=4, unit=PERCENT)
HALF = Look(width=12)


def _breakdown(dimension: str) -> Query:
    """Customers active in the last 7 days per value of one breakdown dimension."""
    return Query(
        f'sum by (value) (retention_breakdown_active_customers{{dimension="{dimension}", '
        f'value=~"${dimension}", window="7d"}})',
        "{{value}}",
    )


PANELS = [
    stat_panel(
        "Customers tracked",
        Query("sum(retention_customers)"),
        look=Look(width=4, height=4, description="Customers seen with at least one activity."),
    ),
    stat_panel(
        "Active, last complete day (DAU)",
        Query('sum(retention_active_customers{window="1d"})'),
        look=Look(
            width=4,
            height=4,
            description="Distinct customers active on the last complete day (the day "
            "before the watermark's).",
        ),
    ),
    stat_panel(
        "Active, last 7 days", Query('sum(retention_active_customers{window="7d"})'), look=SMALL
    ),
    stat_panel(
        "Active, last 30 days (MAU)",
        Query('sum(retention_active_customers{window="30d"})'),
        look=SMALL,
    ),
    stat_panel("Stickiness (DAU / MAU)", Query("retention:stickiness:ratio"), look=SMALL_PERCENT),
    stat_panel(
        "Watermark age",
        Query("time() - max(retention_watermark_seconds)"),
        look=Look(
            width=4,
            height=4,
            unit="s",
            description="Wall clock minus the event-time watermark. Grows when no "
            "events arrive; very large for a replay of old events.",
            thresholds=((None, "green"), (900, "orange"), (3600, "red")),
        ),
    ),
    stat_panel(
        "Day-1 retention, newest complete cohort",
        Query('cohort_period:retention_cohort_early:ratio_newest{cohort_period="day"}'),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            description="Share of the newest daily cohort whose next day is complete that "
            "came back on that day.",
        ),
    ),
    stat_panel(
        "Churn, last complete day",
        Query('period:retention_churn:ratio{period="day"}'),
        look=SMALL_PERCENT,
    ),
    stat_panel(
        "Churn, last complete week",
        Query('period:retention_churn:ratio{period="week"}'),
        look=SMALL_PERCENT,
    ),
    stat_panel(
        "CRR, last complete month",
        Query('period:retention_crr:ratio{period="month"}'),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            description="Customer retention rate: (end base - new) / start base.",
        ),
    ),
    stat_panel("Net revenue", Query("sum(retention_net_revenue)"), look=SMALL),
    stat_panel("NPS", Query("max(retention_nps)"), look=Look(width=4, height=4, decimals=0)),
    timeseries_panel(
        "Active customers",
        Query("sum by (window) (retention_active_customers)", "{{window}}"),
        Query(
            'sum(retention_active_customers_so_far{window="1d"})', "so far today (live, partial)"
        ),
        look=Look(
            width=12,
            description="Trailing windows ending on the last complete day; the live line "
            "counts the watermark's day so far (it starts near 0 every day; no alert reads "
            "it).",
        ),
    ),
    timeseries_panel(
        "Churn, CRR and retained share by period",
        Query("period:retention_churn:ratio", "churn {{period}}"),
        Query("period:retention_crr:ratio", "CRR {{period}}"),
        Query("period:retention_retained_share:ratio", "retained share {{period}}"),
        look=Look(width=12, unit=PERCENT),
    ),
    barchart_panel(
        "Installs vs active customers per day",
        Query('sum by (start) (retention_period_installs{period="day"})', "installs"),
        Query('sum by (start) (retention_period_active_customers{period="day"})', "active"),
        x_field="start",
        look=Look(width=24),
    ),
    timeseries_panel("Active customers (7 days) by platform", _breakdown("platform"), look=HALF),
    timeseries_panel("Active customers (7 days) by channel", _breakdown("channel"), look=HALF),
]

BOARD = Board(
    OVERVIEW,
    "Active customers, retention and churn at a glance.",
    PANELS,
    (breakdown_picker("platform", "Platform"), breakdown_picker("channel", "Channel")),
)
