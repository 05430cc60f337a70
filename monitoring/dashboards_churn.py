"""Churn & lifecycle: churn, CRR and the retained share per period, base movements, lifecycle and segments.

The `period` variable (day, week, month) picks the period of every churn query.
"""

from __future__ import annotations

from monitoring.board import Board
from monitoring.config import CHURN
from monitoring.panels import (
    PERCENT,
    Look,
    Query,
    barchart_panel,
    bargauge_panel,
    stat_panel,
    timeseries_panel,
)
from monitoring.variables import period_choice

PERIOD = 'period="$period"'
SMALL = Look(width=3, height=4)  # the four counts share a row with three ratios
# The panel the ChurnRateSpike alert links to.
CHURN_VS_BASELINE = "Churn vs its trailing baseline"

PANELS = [
    stat_panel(
        "Churn",
        Query(f"period:retention_churn:ratio{{{PERIOD}}}"),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            description="Lost / start base, last complete period.",
        ),
    ),
    stat_panel(
        "CRR",
        Query(f"period:retention_crr:ratio{{{PERIOD}}}"),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            description="(End base - new) / start base: returning lapsed customers raise it.",
        ),
    ),
    stat_panel(
        "Retained share",
        Query(f"period:retention_retained_share:ratio{{{PERIOD}}}"),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            description="Start-base customers still in the base at the end / start base.",
        ),
    ),
    stat_panel("Lost customers", Query(f"sum(retention_lost_customers{{{PERIOD}}})"), look=SMALL),
    stat_panel(
        "Base at start", Query(f"sum(retention_base_start_customers{{{PERIOD}}})"), look=SMALL
    ),
    stat_panel("Base at end", Query(f"sum(retention_base_end_customers{{{PERIOD}}})"), look=SMALL),
    stat_panel("New customers", Query(f"sum(retention_new_customers{{{PERIOD}}})"), look=SMALL),
    timeseries_panel(
        CHURN_VS_BASELINE,
        Query(f"period:retention_churn:ratio{{{PERIOD}}}", "churn"),
        Query(f"period:retention_churn:ratio_baseline{{{PERIOD}}}", "baseline"),
        look=Look(
            width=12,
            unit=PERCENT,
            description="What the ChurnRateSpike alert compares (day and week).",
        ),
    ),
    timeseries_panel(
        "CRR and retained share",
        Query(f"period:retention_crr:ratio{{{PERIOD}}}", "CRR"),
        Query(f"period:retention_retained_share:ratio{{{PERIOD}}}", "retained share"),
        look=Look(
            width=12,
            unit=PERCENT,
            description="CRR counts returning lapsed customers in the end base; the retained"
            " share follows the start base alone.",
        ),
    ),
    timeseries_panel(
        "Base, new and lost customers",
        Query(f"sum(retention_base_start_customers{{{PERIOD}}})", "base at start"),
        Query(f"sum(retention_base_end_customers{{{PERIOD}}})", "base at end"),
        Query(f"sum(retention_new_customers{{{PERIOD}}})", "new"),
        Query(f"sum(retention_lost_customers{{{PERIOD}}})", "lost"),
        look=Look(width=12),
    ),
    barchart_panel(
        "Lifecycle",
        Query(
            f"sum by (start, state) (retention_lifecycle_customers{{{PERIOD}}}"
            " unless on (period, start) retention_period_running)"
        ),
        x_field="start",
        pivot=("start", "state"),
        look=Look(
            width=12,
            description="New, returning, resurrecting and dormant customers per complete "
            "period (the running one is left out).",
        ),
    ),
    bargauge_panel(
        "Churned customers: quick vs late",
        Query("sum by (tenure) (retention_churned_customers)", "{{tenure}}"),
        look=Look(width=12),
    ),
    bargauge_panel(
        "Win-back rate",
        Query("max by (tenure) (retention_winback_ratio)", "{{tenure}}"),
        look=Look(width=12, unit=PERCENT),
    ),
    bargauge_panel(
        "RFM segments",
        Query("sum by (segment) (retention_rfm_customers)", "{{segment}}"),
        look=Look(width=24),
    ),
]

BOARD = Board(
    CHURN,
    "Churn, CRR and retained share per period, lifecycle, quick vs late churn, win-back, RFM.",
    PANELS,
    (period_choice("period", "Period"),),
    time_from="now-7d",
)
