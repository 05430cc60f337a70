"""Complete periods through the real pipeline: gauges are evaluated at the end of the last
complete day C, the running watermark day T only feeds the series named "so far", and
cells and periods still running at C are marked and left out of the pooled curve.

Kafka -> worker -> Redis -> exporter, compared with the oracle (tests/oracle/, which
defines C once in periods.evaluation_day) and, for the issue's own example, with the
numbers the issue states.
"""

from __future__ import annotations

from typing import Any

import pytest

from retention.report import build
from retention.scrape import Scrape, parse
from tests.oracle import COMPARED, Key, OracleSettings, compute, diff, flatten, key
from tests.pipeline_runner import Pipeline
from tests.toy_events import ev

pytestmark = pytest.mark.integration

# 2026-03-04 is a Wednesday: C = 03-04 leaves week 03-02 and March running.
YESTERDAY, TODAY = "2026-03-04", "2026-03-05"


def issue_example() -> list[dict[str, Any]]:
    """100 customers active all day yesterday (each opens the app three times), one of
    them again at 01:00 today; and an older weekly cohort of 10 (installed in week
    02-23), all ten of whom are among yesterday's active customers."""
    events = []
    for n in range(100):
        for hour in ("08:00:00", "13:00:00", "21:00:00"):
            events.append(ev(f"a{n}-{hour}", f"c{n}", "app_open", YESTERDAY, hour))
    for n in range(10):
        events.append(ev(f"i{n}", f"c{n}", "install", "2026-02-24"))
    events.append(ev("late-night", "c0", "app_open", TODAY, "01:00:00"))
    return events


def pooled_week(expected: dict[Key, float]) -> list[tuple[int, float, float]]:
    """The oracle's weekly pooled curve: retained and sizes summed over complete cells."""
    retained: dict[int, float] = {}
    sizes: dict[int, float] = {}
    for (name, labels), value in expected.items():
        cell = dict(labels)
        if name != "retention_cohort_retained" or cell["cohort_period"] != "week":
            continue
        if ("retention_cohort_cell_running", labels) in expected:
            continue
        offset = int(cell["offset"])
        size = expected[key("retention_cohort_size", cohort_period="week", cohort=cell["cohort"])]
        retained[offset] = retained.get(offset, 0) + value
        sizes[offset] = sizes.get(offset, 0) + size
    return [(k, retained[k], sizes[k]) for k in sorted(sizes)]


def test_running_day_feeds_only_the_so_far_series(pipeline) -> None:  # type: ignore[no-untyped-def]
    events = issue_example()
    p: Pipeline = pipeline()
    p.produce(events)
    p.wait_until_consumed(timeout=120)
    text = p.scrape_text()
    expected = compute(events, OracleSettings())
    problems = diff(expected, flatten(text, COMPARED))
    assert not problems, problems

    # The issue's example: the complete day counts 100, the running day 1 so far.
    got = flatten(text, COMPARED)
    assert got[key("retention_active_customers", window="1d")] == 100
    assert got[key("retention_active_customers_so_far", window="1d")] == 1
    assert got[key("retention_stickiness_ratio")] == 1.0  # 100 / 100, both on C

    # Week 03-02 is running at C: the cells in it are marked, and so is the period.
    new_cell = {"cohort_period": "week", "cohort": "2026-03-02", "offset": "0"}
    old_cell = {"cohort_period": "week", "cohort": "2026-02-23", "offset": "1"}
    for cell in (new_cell, old_cell):
        assert got[key("retention_cohort_cell_running", **cell)] == 1
    assert key("retention_cohort_cell_running", **{**old_cell, "offset": "0"}) not in got
    assert got[key("retention_period_running", period="week", start="2026-03-02")] == 1
    assert key("retention_lifecycle_churn_ratio", period="week", start="2026-03-02") not in got

    # The CLI's pooled curve (retention report) leaves the running cells out: only
    # cohort 02-23's complete offset 0 remains, 10 of 10.
    report = build(Scrape("http://exporter/metrics", parse(text), 0.0))
    curve = report.curves["retention_cohort_retained"]["week"]
    got_curve = [(c.offset, c.retained, c.size) for c in curve]
    assert got_curve == pooled_week(expected) == [(0, 10, 10)]
