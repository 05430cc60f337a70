"""Prometheus naming conventions of everything the exporter serves, checked on the scrape
of the realistic 2,000-customer history of test_pipeline.py (no extra pipeline).

* counters, and only counters, end in `_total`;
* quotients end in `_ratio` and lie in [0, 1], with the exceptions listed below;
* base units: no `_milliseconds`, `_hours`, `_days`, `_years`, `_percent` ...;
* label names from a fixed, bounded set; no label value is a customer or event id.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.oracle import QUOTIENTS
from tests.test_pipeline import Run, utc_run

__all__ = ["utc_run"]  # the module-scoped fixture, shared with test_pipeline.py

pytestmark = pytest.mark.integration

# Quotients that are not 0-1 ratios, so rightly do not end in `_ratio`.
NOT_RATIOS = {
    "retention_crr": "(end base - new) / start base: exceeds 1 when churned customers return",
    "retention_breakdown_crr": "as retention_crr",
    "retention_nps": "a score from -100 to 100",
    "retention_clv": "currency units per customer",
    "retention_mrr": "currency units per month",
    "retention_average_order_value": "currency units per purchase",
    "retention_purchase_frequency": "purchases per purchasing customer (>= 1)",
    "retention_purchases_per_customer_year": "purchases per customer-year",
    "retention_clv_lifespan_seconds": "a duration: 1 / churn rate",
}
# `_ratio` metrics whose definition lets them exceed 1.
RATIO_ABOVE_ONE: set[str] = set()
BREAKDOWN_QUOTIENTS = {
    "retention_breakdown_cohort_ratio",
    "retention_breakdown_churn_ratio",
    "retention_breakdown_crr",
}
ALLOWED_LABELS = {
    "type",
    "reason",
    "window",
    "cohort_period",
    "cohort",
    "offset",
    "period",
    "start",
    "state",
    "group",
    "tenure",
    "segment",
    "dimension",
    "value",
}
NON_BASE_UNITS = re.compile(
    r"_(milliseconds|microseconds|minutes|hours|days|weeks|months|years|percent|"
    r"kilobytes|megabytes|milli|cents)(_total)?$"
)


def families(run: Run) -> list[tuple[str, str, str, list[Sample]]]:
    """(name, type, help, samples) of every retention_* family, `_created` dropped."""
    out = []
    for family in text_string_to_metric_families(run.text):
        if family.name.startswith("retention_"):
            samples = [s for s in family.samples if not s.name.endswith("_created")]
            out.append((family.name, family.type, family.documentation, samples))
    return out


def test_counters_and_only_counters_end_in_total(utc_run: Run) -> None:
    for name, kind, doc, samples in families(utc_run):
        assert doc.strip(), f"{name} has no HELP text"
        for sample in samples:
            if kind == "counter":
                assert sample.name == f"{name}_total", sample.name
            else:
                assert not sample.name.endswith("_total"), f"gauge {sample.name} ends in _total"


def test_ratios(utc_run: Run) -> None:
    scraped = {name: samples for name, _, _, samples in families(utc_run)}
    for name in (QUOTIENTS | BREAKDOWN_QUOTIENTS) & scraped.keys():
        assert name.endswith("_ratio") or name in NOT_RATIOS, f"{name}: a quotient, not _ratio"
    for name, samples in scraped.items():
        if name.endswith("_ratio"):
            assert samples, f"{name} has no samples in this history"
            if name not in RATIO_ABOVE_ONE:
                bad = [s for s in samples if not 0 <= s.value <= 1]
                assert not bad, f"{name} outside [0, 1]: {bad[:3]}"
        else:
            assert name in NOT_RATIOS or name not in QUOTIENTS | BREAKDOWN_QUOTIENTS
    # The exceptions are real metric names (no stale entries).
    assert NOT_RATIOS.keys() <= scraped.keys()


def test_metric_names_use_base_units(utc_run: Run) -> None:
    bad = [name for name, _, _, _ in families(utc_run) if NON_BASE_UNITS.search(name)]
    assert not bad, f"not in base units (Prometheus wants seconds, bytes, ratios): {bad}"
    assert "retention_watermark_seconds" in {name for name, _, _, _ in families(utc_run)}


def test_labels_are_bounded_and_never_ids(utc_run: Run) -> None:
    assert utc_run.history, "the run must carry its history"
    customer_ids = {e["customer_id"] for e in utc_run.history}
    event_ids = {e["event_id"] for e in utc_run.history}
    assert len(customer_ids) == 2000
    values_per_label: dict[str, set[str]] = {}
    for name, _, _, samples in families(utc_run):
        assert len(samples) <= 2000, f"{name}: {len(samples)} series"
        for sample in samples:
            unknown = set(sample.labels) - ALLOWED_LABELS
            assert not unknown, f"{sample.name} has labels {unknown}"
            for label, value in sample.labels.items():
                assert value not in customer_ids, f"{sample.name}{{{label}={value!r}}}"
                assert value not in event_ids, f"{sample.name}{{{label}={value!r}}}"
                values_per_label.setdefault(label, set()).add(value)
    for label, values in values_per_label.items():
        assert len(values) <= 100, f"label {label} has {len(values)} values"
