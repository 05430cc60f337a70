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
CHURN_BASELINE = "period:retention_churn:ratio_baseline"
NEWEST_COHORT_RETAINED = "cohort_period:retention_cohort_early_retained:newest"
NEWEST_COHORT_SIZE = "cohort_period:retention_cohort_size:newest"
EARLY_RETENTION_NEWEST = "cohort_period:retention_cohort_early:ratio_newest"
EARLY_RETENTION_BASELINE = "cohort_period:retention_cohort_early:ratio_baseline"
STICKINESS = "retention:stickiness:ratio"

# The cohort whose offset 1 has just completed: the exporter exports offsets 0..age
# of each cohort, so it is the one with offset 2 but no offset 3 (age 2: for days,
# the cohort of the day before yesterday). The younger cohort's offset 1 is still in
# progress and is deliberately left out.
_NEWEST_COMPLETE = (
    'and ignoring (offset) retention_cohort_retained{offset="2"}\n'
    '    unless ignoring (offset) retention_cohort_retained{offset="3"}'
)

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
    # Baseline: offset-1 retention pooled over the older exported cohorts (age >= 3,
    # up to RETENTION_COHORTS_KEPT of them), weighted by cohort size. It needs no
    # Prometheus history, so it is right from the first scrape and after a replay.
    Recording(
        EARLY_RETENTION_BASELINE,
        "sum by (cohort_period) (\n"
        '  retention_cohort_retained{offset="1"}\n'
        '    and ignoring (offset) retention_cohort_retained{offset="3"}\n'
        ")\n"
        "/\n"
        "(\n"
        "  sum by (cohort_period) (\n"
        "    retention_cohort_size\n"
        '      and ignoring (offset) retention_cohort_retained{offset="3"}\n'
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
