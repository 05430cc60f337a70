"""Recording rules: aggregate numerators and denominators first, divide last.

Never average a ratio: sums drop job/instance, so replicas of the exporter do not
change a ratio. Rule names follow `level:metric:operation`. Label conventions of the
raw metrics (README "Metrics"): `period` / `cohort_period` are day|week|month,
`cohort` is the cohort's first day (YYYY-MM-DD) or month (YYYY-MM), `offset` counts
periods after the cohort. One tracker per Prometheus is assumed; for several, add a
`tracker` label in the scrape configs and to every `by (...)` below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recording:
    """One recording rule: the series name it records and its PromQL."""

    record: str
    expr: str


LOST = "period:retention_lost_customers:sum"
BASE_START = "period:retention_base_start_customers:sum"
CHURN = "period:retention_churn:ratio"
CRR = "period:retention_crr:ratio"
RETAINED_SHARE = "period:retention_retained_share:ratio"
CHURN_BASELINE = "period:retention_churn:ratio_baseline"
NEWEST_COHORT_RETAINED = "cohort_period:retention_cohort_early_retained:newest"
NEWEST_COHORT_SIZE = "cohort_period:retention_cohort_size:newest"
EARLY_RETENTION_NEWEST = "cohort_period:retention_cohort_early:ratio_newest"
EARLY_RETENTION_BASELINE = "cohort_period:retention_cohort_early:ratio_baseline"
STICKINESS = "retention:stickiness:ratio"

# The exporter marks each cohort cell whose period is not complete yet; rules and
# alerts read complete cells only.
RUNNING_CELL = "retention_cohort_cell_running"


def complete(cells: str) -> str:
    """The cells of a selector whose period is complete: the running ones left out."""
    return f"({cells} unless on (cohort_period, cohort, offset) {RUNNING_CELL})"


_OFFSET_1_DONE = complete('retention_cohort_retained{offset="1"}')
_OFFSET_2_DONE = complete('retention_cohort_retained{offset="2"}')
# The cohort whose offset 1 has just completed: offset 1 complete, offset 2 not (still
# running, or not exported yet). The younger cohort's offset 1 is still in progress
# and is deliberately left out.
_NEWEST_COMPLETE = (
    f"and on (cohort_period, cohort) {_OFFSET_1_DONE}\n"
    f"    unless on (cohort_period, cohort) {_OFFSET_2_DONE}"
)
# The older cohorts: their offset 2 is complete too.
_OLDER = f"and on (cohort_period, cohort) {_OFFSET_2_DONE}"

CHURN_RULES = [
    Recording(LOST, "sum by (period) (retention_lost_customers)"),
    Recording(BASE_START, "sum by (period) (retention_base_start_customers)"),
    Recording(CHURN, f"{LOST}\n  / ({BASE_START} > 0)\n"),
    Recording(
        CRR,
        "(sum by (period) (retention_base_end_customers)"
        " - sum by (period) (retention_new_customers))\n"
        f"  / ({BASE_START} > 0)\n",
    ),
    # The share of the start base still there at the end: |S and E| / S = (S - lost) / S.
    Recording(RETAINED_SHARE, f"({BASE_START} - {LOST})\n  / ({BASE_START} > 0)\n"),
    # The churn series steps once per period (when the watermark enters a new one).
    # Its baseline is the time-weighted mean over the previous week (day) or four
    # weeks (week), ending one period ago so that the current value is not part of
    # its own baseline. Months have no baseline: too few of them fit in the
    # retention of a typical Prometheus.
    Recording(
        CHURN_BASELINE,
        f'avg_over_time({CHURN}{{period="day"}}[7d] offset 1d)\n'
        "  or\n"
        f'avg_over_time({CHURN}{{period="week"}}[4w] offset 1w)\n',
    ),
]

COHORT_RULES = [
    Recording(
        NEWEST_COHORT_RETAINED,
        "sum by (cohort_period) (\n"
        '  retention_cohort_retained{offset="1"}\n'
        f"    {_NEWEST_COMPLETE}\n"
        ")\n",
    ),
    Recording(
        NEWEST_COHORT_SIZE,
        f"sum by (cohort_period) (\n  retention_cohort_size\n    {_NEWEST_COMPLETE}\n)\n",
    ),
    Recording(
        EARLY_RETENTION_NEWEST,
        f"{NEWEST_COHORT_RETAINED}\n  / ({NEWEST_COHORT_SIZE} > 0)\n",
    ),
    # Baseline: offset-1 retention pooled over the older exported cohorts (offset 2
    # complete, up to RETENTION_COHORTS_KEPT of them), weighted by cohort size. It
    # needs no Prometheus history, so it is right from the first scrape and after a
    # replay.
    Recording(
        EARLY_RETENTION_BASELINE,
        "sum by (cohort_period) (\n"
        '  retention_cohort_retained{offset="1"}\n'
        f"    {_OLDER}\n"
        ")\n"
        "/\n"
        "(\n"
        "  sum by (cohort_period) (\n"
        "    retention_cohort_size\n"
        f"      {_OLDER}\n"
        "  ) > 0\n"
        ")\n",
    ),
]

ACTIVITY_RULES = [
    Recording(
        STICKINESS,
        'sum(retention_active_customers{window="1d"})\n'
        '  / (sum(retention_active_customers{window="30d"}) > 0)\n',
    ),
]

RECORDING_RULES = CHURN_RULES + COHORT_RULES + ACTIVITY_RULES


def recording_groups() -> dict[str, object]:
    """The recording rules as a Prometheus rule file."""
    return {
        "groups": [
            {
                "name": "retention-recording",
                "rules": [{"record": r.record, "expr": r.expr} for r in RECORDING_RULES],
            }
        ]
    }
