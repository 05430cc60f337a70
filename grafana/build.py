"""Build the Grafana dashboards: the one source of truth for grafana/dashboards/*.json.

    python3 grafana/build.py            # rewrite grafana/dashboards/*.json
    python3 grafana/build.py --check    # exit 1 if the checked-in JSON is not a fresh build

Each dashboard is one Python list of panels below, in layout order (left to right,
top to bottom, rows of 24 grid units). Every panel is self-contained: its queries
need nothing from another panel, so a panel can be dropped by deleting its line.
Panels that read a metric of the next metric suite (NEXT_SUITE_METRICS) are marked
`# next suite` at the end of their first line. tests/test_dashboards.py runs every
query of every panel against a real Prometheus fed through the real pipeline.

Conventions: counts are summed (`sum`), ratios the exporter computes itself are
read with `max` (every replica exports the same value; never average a ratio), and
ratios of counts come from the recording rules in prometheus/rules/recording.yml.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources
TAG = "retention"

# Announced metrics the exporter does not serve yet (metrics/collector.py).
NEXT_SUITE_METRICS = frozenset(
    {
        "retention_cohort_unbounded_retained",
        "retention_cohort_unbounded_ratio",
        "retention_lifecycle_customers",
        "retention_stickiness_ratio",
        "retention_period_installs",
        "retention_period_active_customers",
        "retention_purchases_total",
        "retention_purchasing_customers",
        "retention_repeat_customers",
        "retention_repeat_purchase_ratio",
        "retention_purchase_frequency",
        "retention_revenue_total",
        "retention_refunded_revenue_total",
        "retention_net_revenue",
        "retention_average_order_value",
        "retention_clv",
        "retention_subscribers",
        "retention_mrr",
        "retention_subscription_churn_ratio",
        "retention_nps",
        "retention_nps_responses",
        "retention_churned_customers",
        "retention_winback_ratio",
        "retention_rfm_customers",
        "retention_breakdown_active_customers",
    }
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class P:
    """One panel. kind: stat, timeseries, table, barchart, bargauge, piechart."""

    kind: str
    title: str
    queries: tuple[Q, ...]
    w: int = 6
    h: int = 8
    unit: str = "short"
    description: str = ""
    decimals: int | None = None
    # table/barchart: pivot an instant query into rows x columns (label names).
    matrix: tuple[str, str] | None = None
    x_field: str | None = None  # barchart: the label on the x axis
    thresholds: tuple[tuple[float | None, str], ...] = ()
    extra: Json = field(default_factory=dict)


def q(expr: str, legend: str = "") -> tuple[Q, ...]:
    return (Q(expr, legend),)


PCT = "percentunit"
RATE = "$__rate_interval"

# --- Retention overview ------------------------------------------------------------------
OVERVIEW: list[P] = [
    P(
        "stat",
        "Customers tracked",
        q("sum(retention_customers)"),
        w=4,
        h=4,
        description="Customers seen with at least one activity.",
    ),
    P(
        "stat",
        "Active, last day (DAU)",
        q('sum(retention_active_customers{window="1d"})'),
        w=4,
        h=4,
        description="Distinct customers active on the watermark day.",
    ),
    P("stat", "Active, last 7 days", q('sum(retention_active_customers{window="7d"})'), w=4, h=4),
    P(
        "stat",
        "Active, last 30 days (MAU)",
        q('sum(retention_active_customers{window="30d"})'),
        w=4,
        h=4,
    ),
    P("stat", "Stickiness (DAU / MAU)", q("retention:stickiness:ratio"), w=4, h=4, unit=PCT),
    P(
        "stat",
        "Watermark age",
        q("time() - max(retention_watermark_seconds)"),
        w=4,
        h=4,
        unit="s",
        description="Wall clock minus the event-time watermark. Grows when no "
        "events arrive; very large for a replay of old events.",
        thresholds=((None, "green"), (900, "orange"), (3600, "red")),
    ),
    P(
        "stat",
        "Day-1 retention, newest complete cohort",
        q('cohort_period:retention_cohort_early:ratio_newest{cohort_period="day"}'),
        w=4,
        h=4,
        unit=PCT,
        description="Share of the cohort of the day before yesterday that came back yesterday.",
    ),
    P(
        "stat",
        "Churn, last complete day",
        q('period:retention_churn:ratio{period="day"}'),
        w=4,
        h=4,
        unit=PCT,
    ),
    P(
        "stat",
        "Churn, last complete week",
        q('period:retention_churn:ratio{period="week"}'),
        w=4,
        h=4,
        unit=PCT,
    ),
    P(
        "stat",
        "CRR, last complete month",
        q('period:retention_crr:ratio{period="month"}'),
        w=4,
        h=4,
        unit=PCT,
        description="Customer retention rate: (end base - new) / start base.",
    ),
    P("stat", "Net revenue", q("sum(retention_net_revenue)"), w=4, h=4),  # next suite
    P("stat", "NPS", q("max(retention_nps)"), w=4, h=4, decimals=0),  # next suite
    P(
        "timeseries",
        "Active customers",
        q("sum by (window) (retention_active_customers)", "{{window}}"),
        w=12,
    ),
    P(
        "timeseries",
        "Churn and CRR by period",
        (
            Q("period:retention_churn:ratio", "churn {{period}}"),
            Q("period:retention_crr:ratio", "CRR {{period}}"),
        ),
        w=12,
        unit=PCT,
    ),
    P(
        "barchart",
        "Installs vs active customers per day",
        (  # next suite
            Q('sum by (start) (retention_period_installs{period="day"})', "installs"),
            Q('sum by (start) (retention_period_active_customers{period="day"})', "active"),
        ),
        w=24,
        x_field="start",
    ),
    P(
        "timeseries",
        "Active customers (7 days) by platform",
        q(  # next suite
            'sum by (value) (retention_breakdown_active_customers{dimension="platform", '
            'value=~"$platform", window="7d"})',
            "{{value}}",
        ),
        w=12,
    ),
    P(
        "timeseries",
        "Active customers (7 days) by channel",
        q(  # next suite
            'sum by (value) (retention_breakdown_active_customers{dimension="channel", '
            'value=~"$channel", window="7d"})',
            "{{value}}",
        ),
        w=12,
    ),
]

# --- Cohorts -----------------------------------------------------------------------------
CP = 'cohort_period="$cohort_period"'
COHORTS: list[P] = [
    P(
        "table",
        "Retention by cohort and offset",
        q(f"retention_cohort_ratio{{{CP}}}"),
        w=24,
        h=10,
        unit=PCT,
        matrix=("cohort", "offset"),
        description="Rows: cohorts (first activity period). Columns: periods after the "
        "cohort's. Cells: share of the cohort active in that period.",
        thresholds=((None, "red"), (0.2, "orange"), (0.4, "green")),
    ),
    P(
        "barchart",
        "Retention curve, all cohorts pooled",
        q(
            f"sum by (offset) (retention_cohort_retained{{{CP}}}) / sum by (offset) ("
            f"retention_cohort_size{{{CP}}} * on (instance, job, cohort_period, cohort) "
            f"group_right () (0 * retention_cohort_retained{{{CP}}} + 1))",
            "retained",
        ),
        w=12,
        unit=PCT,
        x_field="offset",
        description="Retained / size summed over the cohorts old enough for each offset.",
    ),
    P(
        "barchart",
        "Offset-1 retention by cohort",
        q(
            f'sum by (cohort) (retention_cohort_retained{{{CP}, offset="1"}}) / '
            f"sum by (cohort) (retention_cohort_size{{{CP}}})",
            "offset 1",
        ),
        w=12,
        unit=PCT,
        x_field="cohort",
        description="The youngest cohort's offset 1 is the current, unfinished period.",
    ),
    P(
        "timeseries",
        "Early retention: newest complete cohort vs baseline",
        (
            Q(f"cohort_period:retention_cohort_early:ratio_newest{{{CP}}}", "newest cohort"),
            Q(
                f"cohort_period:retention_cohort_early:ratio_baseline{{{CP}}}",
                "older cohorts (baseline)",
            ),
        ),
        w=12,
        unit=PCT,
        description="What the RetentionDrop alert compares.",
    ),
    P(
        "table",
        "Cohort sizes",
        q(f"sum by (cohort) (retention_cohort_size{{{CP}}})"),
        w=12,
        matrix=None,
    ),
    P(
        "table",
        "Unbounded retention by cohort and offset",
        q(  # next suite
            f"retention_cohort_unbounded_ratio{{{CP}}}"
        ),
        w=24,
        h=10,
        unit=PCT,
        matrix=("cohort", "offset"),
        description="Share of the cohort active in period cohort + offset or later.",
        thresholds=((None, "red"), (0.2, "orange"), (0.4, "green")),
    ),
]

# --- Churn & lifecycle -------------------------------------------------------------------
PER = 'period="$period"'
CHURN: list[P] = [
    P(
        "stat",
        "Churn",
        q(f"period:retention_churn:ratio{{{PER}}}"),
        w=4,
        h=4,
        unit=PCT,
        description="Lost / start base, last complete period.",
    ),
    P("stat", "CRR", q(f"period:retention_crr:ratio{{{PER}}}"), w=4, h=4, unit=PCT),
    P("stat", "Lost customers", q(f"sum(retention_lost_customers{{{PER}}})"), w=4, h=4),
    P("stat", "Base at start", q(f"sum(retention_base_start_customers{{{PER}}})"), w=4, h=4),
    P("stat", "Base at end", q(f"sum(retention_base_end_customers{{{PER}}})"), w=4, h=4),
    P("stat", "New customers", q(f"sum(retention_new_customers{{{PER}}})"), w=4, h=4),
    P(
        "timeseries",
        "Churn vs its trailing baseline",
        (
            Q(f"period:retention_churn:ratio{{{PER}}}", "churn"),
            Q(f"period:retention_churn:ratio_baseline{{{PER}}}", "baseline"),
        ),
        w=12,
        unit=PCT,
        description="What the ChurnRateSpike alert compares (day and week).",
    ),
    P(
        "timeseries",
        "Base, new and lost customers",
        (
            Q(f"sum(retention_base_start_customers{{{PER}}})", "base at start"),
            Q(f"sum(retention_base_end_customers{{{PER}}})", "base at end"),
            Q(f"sum(retention_new_customers{{{PER}}})", "new"),
            Q(f"sum(retention_lost_customers{{{PER}}})", "lost"),
        ),
        w=12,
    ),
    P(
        "barchart",
        "Lifecycle",
        q(  # next suite
            f"sum by (start, state) (retention_lifecycle_customers{{{PER}}})"
        ),
        w=12,
        matrix=("start", "state"),
        x_field="start",
        description="New, returning, resurrecting and dormant customers per period.",
    ),
    P(
        "bargauge",
        "Churned customers: quick vs late",
        q(  # next suite
            "sum by (tenure) (retention_churned_customers)", "{{tenure}}"
        ),
        w=6,
    ),
    P(
        "bargauge",
        "Win-back rate",
        q(  # next suite
            "max by (tenure) (retention_winback_ratio)", "{{tenure}}"
        ),
        w=6,
        unit=PCT,
    ),
    P(
        "bargauge",
        "RFM segments",
        q(  # next suite
            "sum by (segment) (retention_rfm_customers)", "{{segment}}"
        ),
        w=24,
    ),
]

# --- Value -------------------------------------------------------------------------------
VALUE: list[P] = [
    P("stat", "Revenue", q("sum(retention_revenue_total)"), w=4, h=4),  # next suite
    P("stat", "Refunded", q("sum(retention_refunded_revenue_total)"), w=4, h=4),  # next suite
    P(
        "stat",
        "Average order value",
        q("max(retention_average_order_value)"),  # next suite
        w=4,
        h=4,
        decimals=2,
    ),
    P(
        "stat",
        "Repeat purchase rate",
        q("max(retention_repeat_purchase_ratio)"),  # next suite
        w=4,
        h=4,
        unit=PCT,
    ),
    P(
        "stat",
        "Purchase frequency",
        q("max(retention_purchase_frequency)"),  # next suite
        w=4,
        h=4,
        decimals=2,
        description="Purchases per purchasing customer.",
    ),
    P("stat", "CLV", q('max(retention_clv{cohort="all"})'), w=4, h=4, decimals=2),  # next suite
    P(
        "timeseries",
        "Revenue, refunds and net revenue",
        (  # next suite
            Q("sum(retention_revenue_total)", "revenue"),
            Q("sum(retention_refunded_revenue_total)", "refunded"),
            Q("sum(retention_net_revenue)", "net"),
        ),
        w=12,
    ),
    P(
        "timeseries",
        "Purchases and purchasing customers",
        (  # next suite
            Q("sum(retention_purchases_total)", "purchases"),
            Q("sum(retention_purchasing_customers)", "purchasing customers"),
            Q("sum(retention_repeat_customers)", "repeat customers"),
        ),
        w=12,
    ),
    P(
        "timeseries",
        "Purchase and refund events per second",
        q(
            'sum by (type) (rate(retention_events_total{type=~"purchase|refund"}[$__rate_interval]))',
            "{{type}}",
        ),
        w=12,
        unit="ops",
    ),
    P(
        "barchart",
        "CLV by cohort",
        q(  # next suite
            'max by (cohort) (retention_clv{cohort!="all"})', "CLV"
        ),
        w=12,
        x_field="cohort",
        decimals=2,
    ),
    P(
        "timeseries",
        "MRR and subscribers",
        (  # next suite
            Q("max(retention_mrr)", "MRR"),
            Q("max(retention_subscribers)", "subscribers"),
        ),
        w=12,
    ),
    P(
        "timeseries",
        "Subscription churn by period",
        q(  # next suite
            "max by (period) (retention_subscription_churn_ratio)", "{{period}}"
        ),
        w=12,
        unit=PCT,
    ),
    P("timeseries", "NPS", q("max(retention_nps)", "NPS"), w=12),  # next suite
    P(
        "piechart",
        "NPS responses",
        q(  # next suite
            "sum by (group) (retention_nps_responses)", "{{group}}"
        ),
        w=12,
    ),
]

# --- Pipeline ----------------------------------------------------------------------------
PIPELINE: list[P] = [
    P(
        "stat",
        "Consumed events/s",
        q(f"sum(rate(retention_consumed_events_total[{RATE}]))"),
        w=4,
        h=4,
        unit="ops",
    ),
    P(
        "stat",
        "Consumer lag",
        q("sum(retention_consumer_lag)"),
        w=4,
        h=4,
        thresholds=((None, "green"), (1000, "orange"), (10000, "red")),
    ),
    P(
        "stat",
        "Invalid share",
        q(
            f"sum(rate(retention_events_invalid_total[{RATE}])) / "
            f"sum(rate(retention_consumed_events_total[{RATE}]))"
        ),
        w=4,
        h=4,
        unit=PCT,
        thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
    ),
    P("stat", "Watermark age", q("time() - max(retention_watermark_seconds)"), w=4, h=4, unit="s"),
    P(
        "stat",
        "Targets up",
        q('sum(up{job=~"retention-exporter|retention-worker"})'),
        w=4,
        h=4,
        description="Scrape targets answering: exporter(s) and worker(s).",
    ),
    P(
        "stat",
        "Batches/s",
        q(f"sum(rate(retention_batch_seconds_count[{RATE}]))"),
        w=4,
        h=4,
        unit="ops",
    ),
    P(
        "timeseries",
        "Events/s by type",
        q(f"sum by (type) (rate(retention_events_total[{RATE}]))", "{{type}}"),
        w=12,
        unit="ops",
        description="Unique valid events applied to Redis.",
    ),
    P(
        "timeseries",
        "Invalid events/s by reason",
        q(f"sum by (reason) (rate(retention_events_invalid_total[{RATE}]))", "{{reason}}"),
        w=12,
        unit="ops",
        description="Dead-lettered to events.dlq.",
    ),
    P(
        "timeseries",
        "Consumer lag by partition",
        q("sum by (partition) (retention_consumer_lag)", "partition {{partition}}"),
        w=12,
    ),
    P(
        "timeseries",
        "Consumed events/s and events per batch",
        (
            Q(f"sum(rate(retention_consumed_events_total[{RATE}]))", "consumed/s"),
            Q(
                f"sum(rate(retention_consumed_events_total[{RATE}])) / "
                f"sum(rate(retention_batch_seconds_count[{RATE}]))",
                "events per batch",
            ),
        ),
        w=12,
    ),
    P(
        "timeseries",
        "Batch latency",
        (
            Q(
                f"histogram_quantile(0.5, sum by (le) (rate(retention_batch_seconds_bucket[{RATE}])))",
                "p50",
            ),
            Q(
                f"histogram_quantile(0.99, sum by (le) (rate(retention_batch_seconds_bucket[{RATE}])))",
                "p99",
            ),
        ),
        w=12,
        unit="s",
        description="Decode, dead-letter, Redis apply and offset commit.",
    ),
    P(
        "timeseries",
        "Redis round trip per batch",
        (
            Q(
                f"histogram_quantile(0.5, sum by (le) (rate(retention_redis_seconds_bucket[{RATE}])))",
                "p50",
            ),
            Q(
                f"histogram_quantile(0.99, sum by (le) (rate(retention_redis_seconds_bucket[{RATE}])))",
                "p99",
            ),
        ),
        w=12,
        unit="s",
    ),
]


# --- Variables ---------------------------------------------------------------------------
def query_var(name: str, label: str, expr: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": expr,
        "query": {"query": expr, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "options": [],
    }


def custom_var(name: str, label: str, values: tuple[str, ...]) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "includeAll": False,
        "multi": False,
        "current": {"selected": True, "text": values[0], "value": values[0]},
        "options": [{"selected": i == 0, "text": v, "value": v} for i, v in enumerate(values)],
    }


PLATFORM = query_var(
    "platform",
    "Platform",
    'label_values(retention_breakdown_active_customers{dimension="platform"}, value)',
)
CHANNEL = query_var(
    "channel",
    "Channel",
    'label_values(retention_breakdown_active_customers{dimension="channel"}, value)',
)
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    slug: str  # the URL path after /d/<uid>/, used by the alert annotations
    description: str
    panels: list[P]
    variables: tuple[Json, ...] = ()
    time_from: str = "now-24h"


DASHBOARDS = (
    Dashboard(
        "retention-overview",
        "Retention overview",
        "retention-overview",
        "Active customers, retention and churn at a glance.",
        OVERVIEW,
        (PLATFORM, CHANNEL),
    ),
    Dashboard(
        "retention-cohorts",
        "Cohorts",
        "cohorts",
        "Cohort x offset retention, retention curves and unbounded retention.",
        COHORTS,
        (custom_var("cohort_period", "Cohort period", PERIODS),),
        "now-7d",
    ),
    Dashboard(
        "retention-churn",
        "Churn & lifecycle",
        "churn-and-lifecycle",
        "Churn and CRR per period, lifecycle, quick vs late churn, win-back, RFM.",
        CHURN,
        (custom_var("period", "Period", PERIODS),),
        "now-7d",
    ),
    Dashboard(
        "retention-value",
        "Value",
        "value",
        "Revenue, AOV, repeat purchases, CLV, MRR and NPS.",
        VALUE,
    ),
    Dashboard(
        "retention-pipeline",
        "Pipeline",
        "pipeline",
        "Events/s, invalid events, consumer lag, batch and Redis latency.",
        PIPELINE,
        time_from="now-1h",
    ),
)


# --- Rendering ---------------------------------------------------------------------------
def _thresholds(p: P) -> Json:
    steps = p.thresholds or ((None, "green"),)
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _target(p: P, query: Q, ref: str) -> Json:
    instant = p.kind in ("stat", "table", "barchart", "bargauge", "piechart")
    target: Json = {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "instant": instant,
        "range": not instant,
    }
    if p.kind in ("table", "barchart"):
        target["format"] = "table"
    return target


def _matrix_x(p: P) -> str | None:
    """The x field of a barchart: a plain label, or the corner field of a pivot."""
    return f"{p.matrix[0]}\\{p.matrix[1]}" if p.matrix else p.x_field


def _transformations(p: P) -> list[Json]:
    if p.matrix:
        rows, columns = p.matrix
        return [
            {
                "id": "groupingToMatrix",
                "options": {"rowField": rows, "columnField": columns, "valueField": "Value"},
            },
            {"id": "sortBy", "options": {"sort": [{"field": _matrix_x(p), "desc": True}]}},
        ]
    if p.kind in ("table", "barchart"):
        # Instant table queries give Time, labels..., "Value" (one query) or
        # "Value #A", "Value #B", ... (several): merge them on the labels and name
        # the value columns after the queries' legends.
        names = (
            ["Value"]
            if len(p.queries) == 1
            else [f"Value #{chr(ord('A') + i)}" for i in range(len(p.queries))]
        )
        rename = {
            n: query.legend for n, query in zip(names, p.queries, strict=True) if query.legend
        }
        return [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {},
                    "renameByName": rename,
                },
            },
        ]
    return []


def _options(p: P) -> Json:
    if p.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    if p.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if p.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    if p.kind == "barchart":
        return {
            "xField": _matrix_x(p),
            "orientation": "vertical",
            "showValue": "auto",
            "stacking": "none",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        }
    if p.kind == "bargauge":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    if p.kind == "piechart":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "showLegend": True,
                "values": ["value"],
            },
        }
    raise ValueError(f"unknown panel kind {p.kind!r}")


def _panel(p: P, panel_id: int, x: int, y: int) -> Json:
    defaults: Json = {
        "unit": p.unit,
        "thresholds": _thresholds(p),
        "color": {"mode": "thresholds" if p.kind in ("stat", "table") else "palette-classic"},
    }
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.kind == "table" and p.matrix:
        defaults["custom"] = {"cellOptions": {"type": "color-background"}, "align": "auto"}
    panel: Json = {
        "id": panel_id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "targets": [_target(p, query, chr(ord("A") + i)) for i, query in enumerate(p.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(p),
        "transformations": _transformations(p),
    }
    panel.update(p.extra)
    return panel


def render(d: Dashboard) -> Json:
    panels: list[Json] = []
    x = y = row_h = 0
    for i, p in enumerate(d.panels, start=1):
        if not 0 < p.w <= 24:
            raise ValueError(f"{d.uid}: panel {p.title!r} has width {p.w}")
        if x + p.w > 24:  # next row
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel(p, i, x, y))
        x, row_h = x + p.w, max(row_h, p.h)
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": d.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": False,
                "title": "Retention",
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": list(d.variables)},
        "panels": panels,
    }


def dumps(d: Dashboard) -> str:
    return json.dumps(render(d), indent=2, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    return {OUT / f"{d.uid}.json": dumps(d) for d in DASHBOARDS}


def main() -> int:
    parser = argparse.ArgumentParser(description="Build grafana/dashboards/*.json.")
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    wanted = files()
    stale = sorted(
        str(path.name)
        for path, text in wanted.items()
        if not path.exists() or path.read_text() != text
    )
    extra = sorted(p.name for p in OUT.glob("*.json") if p not in wanted)
    if args.check:
        for name in stale:
            print(f"out of date: grafana/dashboards/{name}", file=sys.stderr)
        for name in extra:
            print(f"not built by grafana/build.py: grafana/dashboards/{name}", file=sys.stderr)
        return 1 if stale or extra else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    for name in extra:
        (OUT / name).unlink()
    print(f"wrote {len(wanted)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
