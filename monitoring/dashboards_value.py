"""Value: revenue, order value, repeat purchases, CLV, subscriptions and NPS."""

from __future__ import annotations

from monitoring.board import Board
from monitoring.config import VALUE
from monitoring.panels import (
    PERCENT,
    RATE_WINDOW,
    Look,
    Query,
    barchart_panel,
    piechart_panel,
    stat_panel,
    timeseries_panel,
)

SMALL = Look(width=4, height=4)
HALF = Look(width=12)

PANELS = [
    stat_panel("Revenue", Query("sum(retention_revenue_total)"), look=SMALL),
    stat_panel("Refunded", Query("sum(retention_refunded_revenue_total)"), look=SMALL),
    stat_panel(
        "Average order value",
        Query("max(retention_average_order_value)"),
        look=Look(
            width=4,
            height=4,
            decimals=2,
            description="Gross revenue per purchase; refunds show in net revenue.",
        ),
    ),
    stat_panel(
        "Repeat purchase rate",
        Query("max(retention_repeat_purchase_ratio)"),
        look=Look(width=4, height=4, unit=PERCENT, description="All time."),
    ),
    stat_panel(
        "Purchase frequency",
        Query("max(retention_purchase_frequency)"),
        look=Look(width=4, height=4, decimals=2, description="Purchases per purchasing customer."),
    ),
    stat_panel(
        "CLV",
        Query('max(retention_clv{cohort="all"})'),
        look=Look(
            width=4,
            height=4,
            decimals=2,
            description="Net revenue per purchase x purchases per customer-year of active life"
            " x lifespan; empty until a recent month had a base.",
        ),
    ),
    timeseries_panel(
        "Revenue, refunds and net revenue",
        Query("sum(retention_revenue_total)", "revenue"),
        Query("sum(retention_refunded_revenue_total)", "refunded"),
        Query("sum(retention_net_revenue)", "net"),
        look=HALF,
    ),
    timeseries_panel(
        "Purchases and purchasing customers",
        Query("sum(retention_purchases_total)", "purchases"),
        Query("sum(retention_purchasing_customers)", "purchasing customers"),
        Query("sum(retention_repeat_customers)", "repeat customers"),
        look=HALF,
    ),
    timeseries_panel(
        "Repeat purchase rate by period",
        Query(
            "sum by (period) (retention_period_repeat_customers)\n"
            "  / (sum by (period) (retention_period_purchasing_customers) > 0)",
            "{{period}}",
        ),
        look=Look(
            width=12,
            unit=PERCENT,
            description="Last complete day, week and month: customers with 2+ purchases in the"
            " period / customers with one.",
        ),
    ),
    timeseries_panel(
        "Purchase and refund events per second",
        Query(
            f'sum by (type) (rate(retention_events_total{{type=~"purchase|refund"}}[{RATE_WINDOW}]))',
            "{{type}}",
        ),
        look=Look(width=12, unit="ops"),
    ),
    barchart_panel(
        "CLV by cohort",
        Query('max by (cohort) (retention_clv{cohort!="all"})', "CLV"),
        x_field="cohort",
        look=Look(width=12, decimals=2),
    ),
    timeseries_panel(
        "MRR and subscribers",
        Query("max(retention_mrr)", "MRR"),
        Query("max(retention_subscribers)", "subscribers"),
        look=HALF,
    ),
    timeseries_panel(
        "Subscription churn by period",
        Query(
            "sum by (period) (retention_subscribers_lost)\n"
            "  / (sum by (period) (retention_subscribers_start) > 0)",
            "{{period}}",
        ),
        look=Look(
            width=12,
            unit=PERCENT,
            description="Last complete period: subscribers at its start who are not"
            " subscribed at its end (cancelled or expired) / subscribers at its start.",
        ),
    ),
    timeseries_panel(
        "Subscribers at period start and lost",
        Query("sum by (period) (retention_subscribers_start)", "start {{period}}"),
        Query("sum by (period) (retention_subscribers_lost)", "lost {{period}}"),
        look=Look(width=12),
    ),
    timeseries_panel("NPS", Query("max(retention_nps)", "NPS"), look=HALF),
    piechart_panel(
        "NPS responses",
        Query("sum by (group) (retention_nps_responses)", "{{group}}"),
        look=HALF,
    ),
]

BOARD = Board(VALUE, "Revenue, AOV, repeat purchases, CLV, MRR and NPS.", PANELS)
