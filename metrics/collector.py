"""Prometheus collector: one Redis snapshot per scrape, turned into metric families.

Counts are exported beside every ratio so that recording rules can sum numerators
and denominators before dividing. Ratios whose denominator is zero are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metrics.aggregates import AggregateReader, CohortValue, PeriodChurn, Snapshot
from metrics.segments import count_segments
from retention.settings import Settings
from streams.calendar import Calendar, Period

SECONDS_PER_YEAR = 365 * 86400  # the year of purchases per customer-year


def gauge(name: str, text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, labels=list(labels))


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    """Add a sample unless the value is undefined (a ratio over zero)."""
    if value is not None:
        family.add_metric(labels, value)


class ChurnFamilies:
    """Base, new, lost, churn and CRR of the last complete periods, under one name prefix."""

    def __init__(self, prefix: str, labels: list[str]) -> None:
        p = [*labels, "period"]
        self.start = gauge(f"{prefix}base_start_customers", "Base at the last period's start.", p)
        self.end = gauge(f"{prefix}base_end_customers", "Base at the end of the last period.", p)
        self.new = gauge(f"{prefix}new_customers", "Customers first seen in the last period.", p)
        self.lost = gauge(f"{prefix}lost_customers", "Start-base customers not in the end base.", p)
        self.churn = gauge(
            f"{prefix}churn_ratio", "Churn of the last period: lost / start base.", p
        )
        self.crr = gauge(
            f"{prefix}crr", "Customer retention rate: (end base - new) / start base.", p
        )

    def add(self, labels: list[str], c: PeriodChurn) -> None:
        where = [*labels, c.period.value]
        self.start.add_metric(where, c.base_start)
        self.end.add_metric(where, c.base_end)
        self.new.add_metric(where, c.new)
        self.lost.add_metric(where, c.lost)
        add(self.churn, where, ratio(c.lost, c.base_start))
        add(self.crr, where, ratio(c.base_end - c.new, c.base_start))

    def all(self) -> tuple[GaugeMetricFamily, ...]:
        return (self.start, self.end, self.new, self.lost, self.churn, self.crr)


class RetentionCollector(Collector):
    """Reads aggregates (never customers) on every scrape."""

    def __init__(self, reader: AggregateReader, settings: Settings) -> None:
        self.reader = reader
        self.settings = settings
        self.calendar: Calendar = reader.calendar

    def collect(self) -> Iterator[Metric]:
        snap = self.reader.read()
        yield from self._totals(snap)
        if snap.watermark_day is None:
            return
        yield from self._activity(snap)
        yield from self._cohorts(snap)
        yield from self._churn(snap)
        yield from self._lifecycle(snap)
        yield from self._purchases(snap)
        yield from self._value(snap)
        yield from self._subscriptions(snap)
        yield from self._nps(snap)
        yield from self._churn_tenure(snap)
        yield from self._rfm(snap)
        yield from self._breakdowns(snap)

    def _totals(self, snap: Snapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "retention_customers",
            "Customers tracked (seen with at least one activity).",
            value=snap.customers,
        )
        events = CounterMetricFamily(
            "retention_events", "Unique valid events applied, by type.", labels=["type"]
        )
        for name, count in sorted(snap.events.items()):
            events.add_metric([name], count)
        yield events
        invalid = CounterMetricFamily(
            "retention_events_invalid",
            "Events rejected to the dead-letter topic, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(snap.invalid.items()):
            invalid.add_metric([reason], count)
        yield invalid

    def _activity(self, snap: Snapshot) -> Iterator[Metric]:
        assert snap.watermark_ms is not None
        yield GaugeMetricFamily(
            "retention_watermark_seconds",
            "Event-time watermark: newest event time less the allowed lateness.",
            value=snap.watermark_ms / 1000,
        )
        active = gauge(
            "retention_active_customers",
            "Distinct customers active in the trailing window ending on the watermark day.",
            ["window"],
        )
        for days, count in snap.active.items():
            active.add_metric([f"{days}d"], count)
        yield active
        sticky = gauge("retention_stickiness_ratio", "Stickiness: 1-day / 30-day active.")
        add(sticky, [], ratio(snap.active[1], snap.active[30]))
        yield sticky

    def _cohorts(self, snap: Snapshot) -> Iterator[Metric]:
        cohort_labels = ["cohort_period", "cohort"]
        cell_labels = [*cohort_labels, "offset"]
        size = gauge(
            "retention_cohort_size",
            "Customers whose first activity falls in the cohort period.",
            cohort_labels,
        )
        retained = gauge(
            "retention_cohort_retained",
            "Cohort customers active in period cohort + offset.",
            cell_labels,
        )
        rate = gauge(
            "retention_cohort_ratio", "N-period retention: retained / cohort size.", cell_labels
        )
        unbounded = gauge(
            "retention_cohort_unbounded_retained",
            "Cohort customers active in period cohort + offset or later.",
            cell_labels,
        )
        unbounded_rate = gauge(
            "retention_cohort_unbounded_ratio",
            "Unbounded (rolling) retention: unbounded retained / cohort size.",
            cell_labels,
        )
        for (kind, cohort), count in snap.cohort_size.items():
            size.add_metric([kind.value, self.calendar.label(cohort, kind)], count)
        for cell, count in snap.retained.items():
            label = self.calendar.label(cell.cohort, cell.period)
            labels = [cell.period.value, label, str(cell.offset)]
            cohort_size = snap.cohort_size[(cell.period, cell.cohort)]
            retained.add_metric(labels, count)
            rate.add_metric(labels, count / cohort_size)
            unbounded.add_metric(labels, snap.unbounded[cell])
            unbounded_rate.add_metric(labels, snap.unbounded[cell] / cohort_size)
        yield from (size, retained, rate, unbounded, unbounded_rate)

    def _churn(self, snap: Snapshot) -> Iterator[Metric]:
        families = ChurnFamilies("retention_", [])
        for c in snap.churn:
            families.add([], c)
        yield from families.all()

    def _lifecycle(self, snap: Snapshot) -> Iterator[Metric]:
        labels = ["period", "start"]
        states = gauge(
            "retention_lifecycle_customers",
            "Lifecycle of each recent period: new, returning, resurrecting, dormant.",
            [*labels, "state"],
        )
        churn = gauge(
            "retention_lifecycle_churn_ratio", "Dormant / active in the period before.", labels
        )
        active = gauge(
            "retention_period_active_customers", "Customers active in the period.", labels
        )
        installs = gauge("retention_period_installs", "Install events in the period.", labels)
        for cycle in snap.lifecycle:
            where = [cycle.period.value, self.calendar.label(cycle.number, cycle.period)]
            for state, count in (
                ("new", cycle.new),
                ("returning", cycle.returning),
                ("resurrecting", cycle.resurrecting),
                ("dormant", cycle.dormant),
            ):
                states.add_metric([*where, state], count)
            add(churn, where, ratio(cycle.dormant, cycle.previous_active))
            active.add_metric(where, cycle.active)
            installs.add_metric(where, cycle.installs)
        yield from (states, churn, active, installs)

    def _purchases(self, snap: Snapshot) -> Iterator[Metric]:
        t = snap.totals
        purchases, net = t["purchases"], t["revenue_milli"] - t["refunded_milli"]
        for name, text, total in (
            ("retention_purchases", "Purchase events.", purchases),
            ("retention_revenue", "Revenue of purchase events.", t["revenue_milli"] / 1000),
            ("retention_refunds", "Refund events.", t["refunds"]),
            ("retention_refunded_revenue", "Amount refunded.", t["refunded_milli"] / 1000),
        ):
            yield CounterMetricFamily(name, text, value=total)
        # A refund lowers it, so it is a gauge rather than a counter.
        yield GaugeMetricFamily("retention_net_revenue", "Revenue less refunds.", value=net / 1000)
        yield GaugeMetricFamily(
            "retention_purchasing_customers", "Customers with a purchase.", value=t["purchasing"]
        )
        yield GaugeMetricFamily(
            "retention_repeat_customers", "Customers with two or more.", value=t["repeat"]
        )
        derived: tuple[tuple[str, str, float | None], ...] = (
            (
                "retention_repeat_purchase_ratio",
                "Repeat / purchasing customers.",
                ratio(t["repeat"], t["purchasing"]),
            ),
            (
                "retention_purchase_frequency",
                "Purchases per purchasing customer.",
                ratio(purchases, t["purchasing"]),
            ),
            (
                "retention_average_order_value",
                "Net revenue per purchase.",
                ratio(net / 1000, purchases),
            ),
        )
        for name, text, value in derived:
            family = gauge(name, text)
            add(family, [], value)
            yield family

    def _value(self, snap: Snapshot) -> Iterator[Metric]:
        lifespan = self._lifespan_years(snap)
        yield GaugeMetricFamily(
            "retention_clv_lifespan_seconds",
            "Average lifespan from last month's churn (capped), in seconds.",
            value=lifespan * SECONDS_PER_YEAR,
        )
        per_year = gauge(
            "retention_purchases_per_customer_year",
            "Purchases per customer-year observed.",
            ["cohort"],
        )
        clv = gauge(
            "retention_clv", "Customer lifetime value: AOV x purchases/year x lifespan.", ["cohort"]
        )
        for month, value in snap.value.items():
            label = "all" if month is None else self.calendar.label(month, Period.MONTH)
            rate = _per_customer_year(value)
            add(per_year, [label], rate)
            aov = ratio(value.net_milli / 1000, value.purchases)
            if aov is not None and rate is not None and aov > 0:
                clv.add_metric([label], aov * rate * lifespan)
        yield from (per_year, clv)

    def _lifespan_years(self, snap: Snapshot) -> float:
        cap = self.settings.clv_max_lifespan_years
        month = next(c for c in snap.churn if c.period is Period.MONTH)
        churn = ratio(month.lost, month.base_start)
        return cap if not churn else min(cap, 1 / (12 * churn))

    def _subscriptions(self, snap: Snapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "retention_subscribers", "Subscribed at the watermark day.", value=snap.subscribers
        )
        yield GaugeMetricFamily(
            "retention_mrr",
            "Monthly recurring revenue of subscribers.",
            value=snap.mrr_milli / 1000,
        )
        p = ["period"]
        cancels = gauge("retention_subscription_cancels", "Cancels in the last period.", p)
        start = gauge("retention_subscribers_start", "Subscribers at the last period's start.", p)
        churn = gauge("retention_subscription_churn_ratio", "Cancels / subscribers at start.", p)
        for c in snap.churn:
            label = [c.period.value]
            cancels.add_metric(label, c.cancels)
            start.add_metric(label, c.subscribers_start)
            add(churn, label, ratio(c.cancels, c.subscribers_start))
        yield from (cancels, start, churn)

    def _nps(self, snap: Snapshot) -> Iterator[Metric]:
        responses = gauge(
            "retention_nps_responses", "NPS answers in the trailing window.", ["group"]
        )
        for group in ("promoter", "passive", "detractor"):
            responses.add_metric([group], snap.nps[group])
        yield responses
        total = sum(snap.nps.values())
        score = gauge("retention_nps", "Net promoter score (-100 to 100), trailing window.")
        add(score, [], ratio(100 * (snap.nps["promoter"] - snap.nps["detractor"]), total))
        yield score

    def _churn_tenure(self, snap: Snapshot) -> Iterator[Metric]:
        labels = ["tenure"]
        churned = gauge("retention_churned_customers", "Customers churned, by tenure.", labels)
        won = gauge("retention_winback_customers", "Churned customers who came back.", labels)
        rate = gauge("retention_winback_ratio", "Won back / churned.", labels)
        for tenure in ("quick", "late"):
            churned.add_metric([tenure], snap.churned[tenure])
            won.add_metric([tenure], snap.won_back[tenure])
            add(rate, [tenure], ratio(snap.won_back[tenure], snap.churned[tenure]))
        yield from (churned, won, rate)

    def _rfm(self, snap: Snapshot) -> Iterator[Metric]:
        assert snap.watermark_day is not None
        counts = count_segments(
            snap.rfm,
            snap.watermark_day,
            self.settings.rfm_recency_days,
            self.settings.rfm_new_days,
        )
        family = gauge("retention_rfm_customers", "Customers per RFM segment.", ["segment"])
        for name, count in counts.items():
            family.add_metric([name], count)
        yield family

    def _breakdowns(self, snap: Snapshot) -> Iterator[Metric]:
        """Active customers, cohorts and churn per platform and per channel value."""
        by = ["dimension", "value"]
        active = gauge(
            "retention_breakdown_active_customers",
            "Active customers by breakdown.",
            [*by, "window"],
        )
        cohort = [*by, "cohort_period", "cohort"]
        size = gauge("retention_breakdown_cohort_size", "Cohort size by breakdown.", cohort)
        retained = gauge(
            "retention_breakdown_cohort_retained", "Retained by breakdown.", [*cohort, "offset"]
        )
        rate = gauge(
            "retention_breakdown_cohort_ratio",
            "N-period retention by breakdown.",
            [*cohort, "offset"],
        )
        churn = ChurnFamilies("retention_breakdown_", by)
        for (dimension, value), core in sorted(snap.breakdowns.items()):
            scope = [dimension, value]
            for days, count in core.active.items():
                active.add_metric([*scope, f"{days}d"], count)
            for (kind, number), count in core.cohort_size.items():
                size.add_metric([*scope, kind.value, self.calendar.label(number, kind)], count)
            for cell, count in core.retained.items():
                label = self.calendar.label(cell.cohort, cell.period)
                labels = [*scope, cell.period.value, label, str(cell.offset)]
                retained.add_metric(labels, count)
                rate.add_metric(labels, count / core.cohort_size[(cell.period, cell.cohort)])
            for c in core.churn:
                churn.add(scope, c)
        yield from (active, size, retained, rate, *churn.all())


def _per_customer_year(value: CohortValue) -> float | None:
    if value.customer_days <= 0:
        return None
    return value.purchases * 365 / value.customer_days
