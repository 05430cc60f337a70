"""Prometheus collector: one Redis snapshot per scrape, turned into metric families.

Counts are exported beside every ratio so that recording rules can sum numerators
and denominators before dividing. Ratios whose denominator is zero are left out.
Families are built as light `Family` objects (metrics/exposition.py): the exporter
writes them straight to text, and `collect()` hands them to prometheus-client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from core.calendar import Calendar, Period
from core.rules import ACTIVITY_WINDOWS, churn_ratio, crr, pooled_churn, ratio, retained_share
from core.segments import RfmThresholds, count_segments
from core.settings import Settings
from metrics.aggregates import AggregateReader
from metrics.exposition import Family
from metrics.shared import SharedResult
from metrics.snapshot import CohortValue, PeriodChurn, Snapshot

SECONDS_PER_YEAR = 365 * 86400  # the year of purchases per customer-year

# Families whose values are amounts of money: their HELP text names the reporting
# currency (RETENTION_CURRENCY), the one every amount is converted to on ingest.
MONEY_FAMILIES = frozenset(
    {
        "retention_revenue",
        "retention_refunded_revenue",
        "retention_net_revenue",
        "retention_average_order_value",
        "retention_mrr",
        "retention_clv",
    }
)

# (cohort_period, cohort) label values by (period type, cohort number).
CohortLabels = dict[tuple[Period, int], tuple[str, str]]


def gauge(name: str, text: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, text, tuple(labels))


def single(name: str, text: str, value: float | None, kind: str = "gauge") -> Family:
    """A family of one unlabelled sample (none when the value is undefined)."""
    family = Family(name, text, kind=kind)
    family.add((), value)
    return family


class ChurnFamilies:
    """Base, new, lost, churn and CRR of the last complete periods, under one name prefix."""

    def __init__(self, prefix: str, labels: Sequence[str]) -> None:
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
        self.retained = gauge(
            f"{prefix}retained_share_ratio",
            "Share of the start base still in the base at the end: |S and E| / start base.",
            p,
        )

    def add(self, labels: tuple[str, ...], c: PeriodChurn) -> None:
        where = (*labels, c.period.value)
        self.start.add(where, c.base_start)
        self.end.add(where, c.base_end)
        self.new.add(where, c.new)
        self.lost.add(where, c.lost)
        self.churn.add(where, churn_ratio(c.lost, c.base_start))
        self.crr.add(where, crr(c.base_start, c.base_end, c.new))
        self.retained.add(where, retained_share(c.base_start, c.stayed))

    def all(self) -> tuple[Family, ...]:
        return (self.start, self.end, self.new, self.lost, self.churn, self.crr, self.retained)


class RetentionCollector(Collector):
    """Reads aggregates (never customers) on every scrape."""

    def __init__(self, reader: AggregateReader, settings: Settings) -> None:
        self.reader = reader
        self.settings = settings
        self.calendar: Calendar = reader.calendar
        # concurrent scrapes share one collection (and a recent one, if so configured)
        self.shared = SharedResult(self.fresh_families, settings.exporter_scrape_max_age_seconds)

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.metric()

    def families(self) -> list[Family]:
        """Every family, from the running collection or a new one; never two at once."""
        return self.shared.get()

    def fresh_families(self) -> list[Family]:
        """Every family from one fresh snapshot, in exposition order."""
        snap = self.reader.read()
        families = self._totals(snap)
        if snap.watermark_day is None:
            return families
        for part in (
            self._activity,
            self._cohorts,
            self._churn,
            self._lifecycle,
            self._purchases,
            self._value,
            self._subscriptions,
            self._nps,
            self._churn_tenure,
            self._rfm,
            self._breakdowns,
        ):
            families += part(snap)
        return name_currency(families, self.settings.currency)

    def _totals(self, snap: Snapshot) -> list[Family]:
        events = Family(
            "retention_events", "Unique valid events applied, by type.", ("type",), "counter"
        )
        for name, count in sorted(snap.events.items()):
            events.add((name,), count)
        invalid = Family(
            "retention_events_invalid",
            "Events rejected to the dead-letter topic, by reason.",
            ("reason",),
            "counter",
        )
        for reason, count in sorted(snap.invalid.items()):
            invalid.add((reason,), count)
        customers = single(
            "retention_customers",
            "Customers tracked (seen with at least one activity).",
            snap.customers,
        )
        return [customers, events, invalid]

    def _activity(self, snap: Snapshot) -> list[Family]:
        assert snap.watermark_ms is not None
        watermark = single(
            "retention_watermark_seconds",
            "Event-time watermark: newest event time less the allowed lateness.",
            snap.watermark_ms / 1000,
        )
        active = gauge(
            "retention_active_customers",
            "Distinct customers active in the trailing window ending on the last complete day.",
            ["window"],
        )
        for days, count in snap.active.items():
            active.add((f"{days}d",), count)
        so_far = gauge(
            "retention_active_customers_so_far",
            "Live, partial: distinct customers active in the trailing window ending on the "
            "running watermark day, so far.",
            ["window"],
        )
        for days, count in snap.active_so_far.items():
            so_far.add((f"{days}d",), count)
        sticky = single(
            "retention_stickiness_ratio",
            "Stickiness on the last complete day: 1-day / 30-day active.",
            ratio(snap.active[ACTIVITY_WINDOWS[0]], snap.active[ACTIVITY_WINDOWS[-1]]),
        )
        return [watermark, active, so_far, sticky]

    def _cohorts(self, snap: Snapshot) -> list[Family]:
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
        running = gauge(
            "retention_cohort_cell_running",
            "1 for a cell whose period cohort + offset is not complete at the last complete "
            "day: its counts are partial and pooled curves and alerts leave it out.",
            cell_labels,
        )
        labels = self._cohort_labels(snap.cohort_size)
        open_periods = self._running(snap)
        for key, count in snap.cohort_size.items():
            size.add(labels[key], count)
        for cell, count in snap.retained.items():
            key = (cell.period, cell.cohort)
            where = (*labels[key], str(cell.offset))
            cohort_size, later = snap.cohort_size[key], snap.unbounded[cell]
            retained.add(where, count)
            rate.add(where, count / cohort_size)
            unbounded.add(where, later)
            unbounded_rate.add(where, later / cohort_size)
            if open_periods[cell.period] == cell.cohort + cell.offset:
                running.add(where, 1)
        return [size, retained, rate, unbounded, unbounded_rate, running]

    def _running(self, snap: Snapshot) -> dict[Period, int | None]:
        """Per period kind, the period that is still running at the end of the
        evaluation day (None when that day completes its period)."""
        assert snap.evaluation_day is not None
        return {kind: self.calendar.running(snap.evaluation_day, kind) for kind in Period}

    def _cohort_labels(self, cohorts: Iterable[tuple[Period, int]]) -> CohortLabels:
        """(cohort_period, cohort) label values of each cohort, worked out once."""
        return {
            (kind, number): (kind.value, self.calendar.label(number, kind))
            for kind, number in cohorts
        }

    def _churn(self, snap: Snapshot) -> list[Family]:
        families = ChurnFamilies("retention_", [])
        for c in snap.churn:
            families.add((), c)
        return list(families.all())

    def _lifecycle(self, snap: Snapshot) -> list[Family]:
        labels = ["period", "start"]
        states = gauge(
            "retention_lifecycle_customers",
            "Lifecycle of each recent period: new, returning, resurrecting, dormant.",
            [*labels, "state"],
        )
        churn = gauge(
            "retention_lifecycle_churn_ratio",
            "Dormant / active in the period before; complete periods only.",
            labels,
        )
        active = gauge(
            "retention_period_active_customers", "Customers active in the period.", labels
        )
        installs = gauge("retention_period_installs", "Install events in the period.", labels)
        running = gauge(
            "retention_period_running",
            "1 for a period not complete at the last complete day: its counts are so far.",
            labels,
        )
        open_periods = self._running(snap)
        for cycle in snap.lifecycle:
            where = (cycle.period.value, self.calendar.label(cycle.number, cycle.period))
            if open_periods[cycle.period] == cycle.number:
                running.add(where, 1)
            else:  # a running period's dormant count only falls as the period goes on
                churn.add(where, ratio(cycle.dormant, cycle.previous_active))
            for state, count in (
                ("new", cycle.new),
                ("returning", cycle.returning),
                ("resurrecting", cycle.resurrecting),
                ("dormant", cycle.dormant),
            ):
                states.add((*where, state), count)
            active.add(where, cycle.active)
            installs.add(where, cycle.installs)
        return [states, churn, active, installs, running]

    def _purchases(self, snap: Snapshot) -> list[Family]:
        t = snap.purchases
        purchases, net = t.purchases, t.net_milli
        families = [
            single(name, text, total, "counter")
            for name, text, total in (
                ("retention_purchases", "Purchase events.", purchases),
                ("retention_revenue", "Revenue of purchase events.", t.revenue_milli / 1000),
                ("retention_refunds", "Refund events.", t.refunds),
                ("retention_refunded_revenue", "Amount refunded.", t.refunded_milli / 1000),
            )
        ]
        # A refund lowers it, so it is a gauge rather than a counter.
        families.append(single("retention_net_revenue", "Revenue less refunds.", net / 1000))
        families.append(
            single(
                "retention_purchasing_customers",
                "Customers with a purchase.",
                t.purchasing_customers,
            )
        )
        families.append(
            single("retention_repeat_customers", "Customers with two or more.", t.repeat_customers)
        )
        derived: tuple[tuple[str, str, float | None], ...] = (
            (
                "retention_repeat_purchase_ratio",
                "Repeat / purchasing customers.",
                ratio(t.repeat_customers, t.purchasing_customers),
            ),
            (
                "retention_purchase_frequency",
                "Purchases per purchasing customer.",
                ratio(purchases, t.purchasing_customers),
            ),
            (
                "retention_average_order_value",
                "Average order value: gross revenue (refunds not deducted) per purchase.",
                ratio(t.revenue_milli / 1000, purchases),
            ),
        )
        families += [single(name, text, value) for name, text, value in derived]
        return families + self._period_buyers(snap)

    def _period_buyers(self, snap: Snapshot) -> list[Family]:
        """Repeat purchase rate of the last complete period of each kind."""
        p = ["period"]
        buyers = gauge(
            "retention_period_purchasing_customers",
            "Customers with a purchase in the last complete period.",
            p,
        )
        repeat = gauge(
            "retention_period_repeat_customers",
            "Customers with two or more purchases in the last complete period.",
            p,
        )
        rate = gauge(
            "retention_period_repeat_purchase_ratio",
            "Repeat purchase rate of the last complete period: repeat / purchasing customers.",
            p,
        )
        for b in snap.buyers:
            label = (b.period.value,)
            buyers.add(label, b.buyers)
            repeat.add(label, b.repeat_buyers)
            rate.add(label, ratio(b.repeat_buyers, b.buyers))
        return [buyers, repeat, rate]

    def _value(self, snap: Snapshot) -> list[Family]:
        lifespan = self._lifespan_years(snap)
        seconds = single(
            "retention_clv_lifespan_seconds",
            "Expected lifespan: 1 / (12 x monthly churn pooled over the last 3 complete months),"
            " capped; in seconds.",
            None if lifespan is None else lifespan * SECONDS_PER_YEAR,
        )
        per_year = gauge(
            "retention_purchases_per_customer_year",
            "Purchases per customer-year of active life (days in the base).",
            ["cohort"],
        )
        clv = gauge(
            "retention_clv",
            "Customer lifetime value: net value per purchase x purchases per year x lifespan.",
            ["cohort"],
        )
        for month, value in snap.value.items():
            label = ("all" if month is None else self.calendar.label(month, Period.MONTH),)
            rate = _per_customer_year(value)
            per_year.add(label, rate)
            value_per_purchase = ratio(value.net_milli / 1000, value.purchases)
            if lifespan is None or value_per_purchase is None or rate is None:
                continue
            if value_per_purchase > 0:
                clv.add(label, value_per_purchase * rate * lifespan)
        return [seconds, per_year, clv]

    def _lifespan_years(self, snap: Snapshot) -> float | None:
        """1 / (12 x pooled monthly churn), capped; the cap when nobody was lost, None
        when none of the months had a base at its start."""
        cap = self.settings.clv_max_lifespan_years
        churn = pooled_churn([(m.lost, m.base_start) for m in snap.lifespan_months])
        if churn is None:
            return None
        return cap if churn == 0 else min(cap, 1 / (12 * churn))

    def _subscriptions(self, snap: Snapshot) -> list[Family]:
        subscribers = single(
            "retention_subscribers",
            "Customers whose subscription is live at the end of the last complete day.",
            snap.subscribers,
        )
        mrr = single(
            "retention_mrr",
            "Monthly recurring revenue of live subscriptions, annual plans / 12.",
            snap.mrr_twelfths / 12000,
        )
        p = ["period"]
        cancels = gauge(
            "retention_subscription_cancels", "subscription_cancel events in the last period.", p
        )
        start = gauge("retention_subscribers_start", "Subscribers at the last period's start.", p)
        lost = gauge(
            "retention_subscribers_lost",
            "Subscribers at the last period's start not subscribed at its end.",
            p,
        )
        churn = gauge(
            "retention_subscription_churn_ratio", "Subscribers lost / subscribers at start.", p
        )
        for c in snap.churn:
            label = (c.period.value,)
            cancels.add(label, c.cancels)
            start.add(label, c.subscribers_start)
            lost.add(label, c.subscribers_lost)
            churn.add(label, ratio(c.subscribers_lost, c.subscribers_start))
        return [subscribers, mrr, cancels, start, lost, churn]

    def _nps(self, snap: Snapshot) -> list[Family]:
        responses = gauge(
            "retention_nps_responses",
            "NPS respondents in the trailing window, by the group of their latest answer.",
            ["group"],
        )
        for group in ("promoter", "passive", "detractor"):
            responses.add((group,), snap.nps[group])
        total = sum(snap.nps.values())
        score = single(
            "retention_nps",
            "Net promoter score (-100 to 100): % promoters - % detractors of respondents.",
            ratio(100 * (snap.nps["promoter"] - snap.nps["detractor"]), total),
        )
        return [responses, score]

    def _churn_tenure(self, snap: Snapshot) -> list[Family]:
        labels = ["tenure"]
        churned = gauge(
            "retention_churned_customers",
            "Customers churned, by tenure (first to last activity before churning).",
            labels,
        )
        won = gauge("retention_winback_customers", "Churned customers who came back.", labels)
        rate = gauge("retention_winback_ratio", "Won back / churned.", labels)
        for tenure in ("quick", "late"):
            churned.add((tenure,), snap.churned[tenure])
            won.add((tenure,), snap.won_back[tenure])
            rate.add((tenure,), ratio(snap.won_back[tenure], snap.churned[tenure]))
        return [churned, won, rate]

    def _rfm(self, snap: Snapshot) -> list[Family]:
        assert snap.evaluation_day is not None
        rules = RfmThresholds(self.settings.rfm_recency_days, self.settings.rfm_new_days)
        counts = count_segments(snap.rfm, snap.evaluation_day, rules)
        family = gauge(
            "retention_rfm_customers",
            "Customers per RFM segment (recency of the last purchase, purchases, spend).",
            ["segment"],
        )
        for name, count in counts.items():
            family.add((name,), count)
        return [family]

    def _breakdowns(self, snap: Snapshot) -> list[Family]:
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
        labels: CohortLabels = {}
        for (dimension, value), core in sorted(snap.breakdowns.items()):
            scope = (dimension, value)
            labels |= self._cohort_labels(core.cohort_size.keys() - labels.keys())
            for days, count in core.active.items():
                active.add((*scope, f"{days}d"), count)
            for key, count in core.cohort_size.items():
                size.add((*scope, *labels[key]), count)
            for cell, count in core.retained.items():
                key = (cell.period, cell.cohort)
                where = (*scope, *labels[key], str(cell.offset))
                retained.add(where, count)
                rate.add(where, count / core.cohort_size[key])
            for c in core.churn:
                churn.add(scope, c)
        return [active, size, retained, rate, *churn.all()]


def name_currency(families: list[Family], currency: str) -> list[Family]:
    """The families, with the money ones' HELP text ending in the currency they are in."""
    for family in families:
        if family.name in MONEY_FAMILIES:
            family.documentation = f"{family.documentation.removesuffix('.')}, in {currency}."
    return families


def _per_customer_year(value: CohortValue) -> float | None:
    if value.customer_days <= 0:
        return None
    return value.purchases * 365 / value.customer_days
