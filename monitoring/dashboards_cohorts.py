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

# The exporter marks cells whose period is not complete yet; they stay out of curves.
RUNNING = "retention_cohort_cell_running"
CELL = "on (cohort_period, cohort, offset)"
# A running cell is shown as this value, mapped to the text "running" in grey.
RUNNING_VALUE = -1
RUNNING_LOOK = ((RUNNING_VALUE, "running", "#8e8e8e"),)


def complete(cells: str) -> str:
    """The complete cells of a selector: the running ones left out."""
    return f"({cells} unless {CELL} {RUNNING})"


def matrix(ratio: str) -> str:
    """The complete cells' ratios, and RUNNING_VALUE in place of each running cell."""
    return f"{complete(f'{ratio}{{{PERIOD}}}')} or {CELL} ({RUNNING_VALUE} * {RUNNING}{{{PERIOD}}})"


# Retained / size summed over the complete cells of each offset: the size of a cohort
# is counted at an offset only where the cohort has a complete retained series.
COMPLETE_RETAINED = complete(f"retention_cohort_retained{{{PERIOD}}}")
POOLED_CURVE = (
    f"sum by (offset) ({COMPLETE_RETAINED}) / sum by (offset) ("
    f"retention_cohort_size{{{PERIOD}}} * on (instance, job, cohort_period, cohort) "
    f"group_right () (0 * {COMPLETE_RETAINED} + 1))"
)
OFFSET_1 = complete(f'retention_cohort_retained{{{PERIOD}, offset="1"}}')

PANELS = [
    table_panel(
        "Retention by cohort and offset",
        Query(matrix("retention_cohort_ratio")),
        look=Look(
            width=24,
            height=10,
            unit=PERCENT,
            description="Rows: cohorts (first activity period). Columns: periods after the "
            "cohort's. Cells: share of the cohort active in that period. A cell whose "
            "period is not complete yet shows 'running' in grey.",
            thresholds=RETENTION_COLOURS,
            mappings=RUNNING_LOOK,
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
            description="Retained / size summed over the cohorts whose period at each "
            "offset is complete (running cells left out).",
        ),
    ),
    barchart_panel(
        "Offset-1 retention by cohort",
        Query(
            f"sum by (cohort) ({OFFSET_1}) / sum by (cohort) (retention_cohort_size{{{PERIOD}}})",
            "offset 1",
        ),
        x_field="cohort",
        look=Look(
            width=12,
            unit=PERCENT,
            description="Cohorts whose offset-1 period is complete.",
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
        Query(matrix("retention_cohort_unbounded_ratio")),
        look=Look(
            width=24,
            height=10,
            unit=PERCENT,
            description="Share of the cohort active in period cohort + offset or later. A "
            "cell whose period is not complete yet shows 'running' in grey.",
            thresholds=RETENTION_COLOURS,
            mappings=RUNNING_LOOK,
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
