"""The scrape side: a Prometheus text exposition in the oracle's shape, and a readable
comparison that holds counts exact and quotients and money up to float rounding."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tests.oracle.basics import Key

# Integer counts: compared exactly.
COUNTS = frozenset(
    {
        "retention_customers",
        "retention_active_customers",
        "retention_active_customers_so_far",
        "retention_cohort_cell_running",
        "retention_period_running",
        "retention_cohort_size",
        "retention_cohort_retained",
        "retention_base_start_customers",
        "retention_base_end_customers",
        "retention_new_customers",
        "retention_lost_customers",
        "retention_events_total",
        "retention_cohort_unbounded_retained",
        "retention_period_active_customers",
        "retention_period_installs",
        "retention_lifecycle_customers",
        "retention_purchases_total",
        "retention_refunds_total",
        "retention_purchasing_customers",
        "retention_repeat_customers",
        "retention_subscribers",
        "retention_subscription_cancels",
        "retention_subscribers_start",
        "retention_subscribers_lost",
        "retention_nps_responses",
        "retention_churned_customers",
        "retention_winback_customers",
        "retention_rfm_customers",
        "retention_breakdown_active_customers",
        "retention_breakdown_cohort_size",
        "retention_breakdown_cohort_retained",
        "retention_breakdown_base_start_customers",
        "retention_breakdown_base_end_customers",
        "retention_breakdown_new_customers",
        "retention_breakdown_lost_customers",
        "retention_period_purchasing_customers",
        "retention_period_repeat_customers",
    }
)
# Quotients and money: compared with math.isclose, since the exporter may divide or
# scale in another (equally valid) order of floating-point operations.
QUOTIENTS = frozenset(
    {
        "retention_cohort_ratio",
        "retention_churn_ratio",
        "retention_crr",
        "retention_cohort_unbounded_ratio",
        "retention_lifecycle_churn_ratio",
        "retention_stickiness_ratio",
        "retention_repeat_purchase_ratio",
        "retention_purchase_frequency",
        "retention_average_order_value",
        "retention_purchases_per_customer_year",
        "retention_clv_lifespan_seconds",
        "retention_clv",
        "retention_subscription_churn_ratio",
        "retention_nps",
        "retention_winback_ratio",
        "retention_breakdown_cohort_ratio",
        "retention_breakdown_churn_ratio",
        "retention_breakdown_crr",
        "retention_breakdown_retained_share_ratio",
        "retention_retained_share_ratio",
        "retention_period_repeat_purchase_ratio",
    }
)
MONEY = frozenset(
    {
        "retention_revenue_total",
        "retention_refunded_revenue_total",
        "retention_net_revenue",
        "retention_mrr",
    }
)
COMPARED = COUNTS | QUOTIENTS | MONEY | {"retention_watermark_seconds"}
# Counters whose zero-valued series carry no information (a type never seen).
DROP_ZERO = frozenset({"retention_events_total", "retention_events_invalid_total"})


def flatten(text: str, names: frozenset[str] = COMPARED) -> dict[Key, float]:
    """Parse Prometheus text format into the oracle's shape, keeping only `names`."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in names:
                continue
            k = (sample.name, tuple(sorted(sample.labels.items())))
            assert k not in out, f"duplicate series {k}"
            out[k] = sample.value
    return out


def flatten_all(text: str) -> dict[Key, float]:
    """Every `retention_*` sample of a scrape (the `_created` timestamps excluded)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("retention_") and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def kept_values(scraped: Mapping[Key, float]) -> dict[str, list[str]]:
    """The platform and channel values a scrape shows besides the two buckets."""
    kept: dict[str, list[str]] = {}
    for name, labels in scraped:
        if name == "retention_breakdown_active_customers":
            found = dict(labels)
            if found["value"] not in ("(not set)", "(other)"):
                values = kept.setdefault(found["dimension"], [])
                if found["value"] not in values:
                    values.append(found["value"])
    return kept


def normalise(d: Mapping[Key, float]) -> dict[Key, float]:
    """Drop zero counters and compare the watermark in whole milliseconds."""
    out = {}
    for k, v in d.items():
        if k[0] in DROP_ZERO and v == 0:
            continue
        if k[0] == "retention_watermark_seconds":
            v = round(v * 1000)
        out[k] = v
    return out


def same(name: str, expected: float, got: float) -> bool:
    """Counts exactly; quotients and money up to float rounding (rel 1e-9)."""
    if name in QUOTIENTS or name in MONEY:
        return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-12)
    return expected == got


def diff(expected: Mapping[Key, float], got: Mapping[Key, float], limit: int = 40) -> str:
    """Readable difference of two flat dicts ('' when equal)."""
    expected, got = normalise(expected), normalise(got)
    lines = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k), got.get(k)
        if e is None or g is None or not same(k[0], e, g):
            lines.append(
                f"{k[0]}{{{','.join(f'{a}={b!r}' for a, b in k[1])}}}: "
                f"expected {'<absent>' if e is None else e} got {'<absent>' if g is None else g}"
            )
    head = "\n".join(lines[:limit])
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} differences:\n{head}{more}" if lines else ""
