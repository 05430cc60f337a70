"""Cohorts: retention of each cohort per period offset, pooled curves, early retention.

Every query is filtered by the `cohort_period` variable (day, week or month cohorts).
"""

from __future__ import annotations

from monitoring.board import Board
from monitoring.config import COHORTS
from monitoring.panels import (
    PERCENT,
    Look,
    Query,
    barchart_panel,
    table_panel,
    timeseries_panel,
)
from monitoring.variables import period_choice

PERIOD = 'cohort_period="$cohort_period"'
RETENTION_COLOURS = ((None, "red"), (0.2, "orange"), (0.4, "green"))
# The panel the RetentionDrop alert links to.
EARLY_RETENTION = "Early retention: newest complete cohort vs baseline"

# Retained / size summed over the cohorts old enough to have each offset: the size
# of a cohort is counted at an offset only where the cohort has a retained series.
POOLED_CURVE = (
    f"sum by (offset) (retention_cohort_retained{{{PERIOD}}}) / sum by (offset) ("
    f"retention_cohort_size{{{PERIOD}}} * on (instance, job, cohort_period, cohort) "
    f"group_right () (0 * retention_cohort_retained{{{PERIOD}}} + 1))"
)

PANELS = [
    table_panel(
        "Retention by cohort and offset",
        Query(f"retention_cohort_ratio{{{PERIOD}}}"),
        look=Look(
            width=24,
            height=10,
            unit=PERCENT,
            description="Rows: cohorts (first activity period). Columns: periods after the "
            "cohort's. Cells: share of the cohort active in that period.",
            thresholds=RETENTION_COLOURS,
        ),
        pivot=("cohort", "offset"),
    ),
    barchart_panel(
        "Retention curve, all cohorts pooled",
        Query(POOLED_CURVE, "retained"),
        x_field="offset",
        look=Look(
            width=12,
            unit=PERCENT,
            description="Retained / size summed over the cohorts old enough for each offset.",
        ),
    ),
    barchart_panel(
        "Offset-1 retention by cohort",
        Query(
            f'sum by (cohort) (retention_cohort_retained{{{PERIOD}, offset="1"}}) / '
            f"sum by (cohort) (retention_cohort_size{{{PERIOD}}})",
            "offset 1",
        ),
        x_field="cohort",
        look=Look(
            width=12,
            unit=PERCENT,
            description="The youngest cohort's offset 1 is the current, unfinished period.",
        ),
    ),
    timeseries_panel(
        EARLY_RETENTION,
        Query(f"cohort_period:retention_cohort_early:ratio_newest{{{PERIOD}}}", "newest cohort"),
        Query(
            f"cohort_period:retention_cohort_early:ratio_baseline{{{PERIOD}}}",
            "older cohorts (baseline)",
        ),
        look=Look(width=12, unit=PERCENT, description="What the RetentionDrop alert compares."),
    ),
    table_panel(
        "Cohort sizes",
        Query(f"sum by (cohort) (retention_cohort_size{{{PERIOD}}})"),
        look=Look(width=12),
    ),
    table_panel(
        "Unbounded retention by cohort and offset",
        Query(f"retention_cohort_unbounded_ratio{{{PERIOD}}}"),
        look=Look(
            width=24,
            height=10,
            unit=PERCENT,
            description="Share of the cohort active in period cohort + offset or later.",
            thresholds=RETENTION_COLOURS,
        ),
        pivot=("cohort", "offset"),
    ),
]

BOARD = Board(
    COHORTS,
    "Cohort x offset retention, retention curves and unbounded retention.",
    PANELS,
    (period_choice("cohort_period", "Cohort period"),),
    time_from="now-7d",
)
