"""Prometheus collector: one Redis snapshot per scrape, turned into metric families.

Counts are exported beside every ratio so that recording rules can sum numerators
and denominators before dividing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metrics.aggregates import AggregateReader, Snapshot
from streams.calendar import Calendar


class RetentionCollector(Collector):
    """Reads aggregates (never customers) on every scrape."""

    def __init__(self, reader: AggregateReader) -> None:
        self.reader = reader
        self.calendar: Calendar = reader.calendar

    def collect(self) -> Iterator[Metric]:
        snap = self.reader.read()
        yield from self._totals(snap)
        yield from self._cohorts(snap)
        yield from self._churn(snap)

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
        if snap.watermark_ms is None:
            return
        yield GaugeMetricFamily(
            "retention_watermark_seconds",
            "Event-time watermark: newest event time less the allowed lateness.",
            value=snap.watermark_ms / 1000,
        )
        active = GaugeMetricFamily(
            "retention_active_customers",
            "Distinct customers active in the trailing window ending on the watermark day.",
            labels=["window"],
        )
        for days, count in snap.active.items():
            active.add_metric([f"{days}d"], count)
        yield active

    def _cohorts(self, snap: Snapshot) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "retention_cohort_size",
            "Customers whose first activity falls in the cohort period.",
            labels=["cohort_period", "cohort"],
        )
        retained = GaugeMetricFamily(
            "retention_cohort_retained",
            "Cohort customers active in period cohort + offset.",
            labels=["cohort_period", "cohort", "offset"],
        )
        ratio = GaugeMetricFamily(
            "retention_cohort_ratio",
            "N-period retention: retained / cohort size.",
            labels=["cohort_period", "cohort", "offset"],
        )
        for (kind, cohort), count in snap.cohort_size.items():
            size.add_metric([kind.value, self.calendar.label(cohort, kind)], count)
        for cell, count in snap.retained.items():
            label = self.calendar.label(cell.cohort, cell.period)
            labels = [cell.period.value, label, str(cell.offset)]
            retained.add_metric(labels, count)
            ratio.add_metric(labels, count / snap.cohort_size[(cell.period, cell.cohort)])
        yield from (size, retained, ratio)

    def _churn(self, snap: Snapshot) -> Iterator[Metric]:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["period"])

        start = gauge("retention_base_start_customers", "Base at the start of the last period.")
        end = gauge("retention_base_end_customers", "Base at the end of the last complete period.")
        new = gauge("retention_new_customers", "Customers first seen in the last complete period.")
        lost = gauge("retention_lost_customers", "Start-base customers not in the end base.")
        churn = gauge("retention_churn_ratio", "Churn of the last period: lost / start base.")
        crr = gauge("retention_crr", "Customer retention rate: (end base - new) / start base.")
        for c in snap.churn:
            label = [c.period.value]
            start.add_metric(label, c.base_start)
            end.add_metric(label, c.base_end)
            new.add_metric(label, c.new)
            lost.add_metric(label, c.lost)
            if c.base_start > 0:
                churn.add_metric(label, c.lost / c.base_start)
                crr.add_metric(label, (c.base_end - c.new) / c.base_start)
        yield from (start, end, new, lost, churn, crr)
