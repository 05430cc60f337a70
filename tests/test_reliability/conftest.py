"""The clean run every fault run is compared with."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.oracle import COMPARED, compute, diff, flatten, flatten_all, key
from tests.pipeline_runner import Pipeline
from tests.test_reliability.support import (
    CUSTOMERS,
    FAULT_SETTINGS,
    LATENESS_S,
    Clean,
    bounded_history,
    read_changes,
    without_invalid,
)


@pytest.fixture(scope="package")
def clean(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """One fault-free run of the history the fault tests replay, at default batch sizes
    (once for the crash, restart and emptied-Redis modules)."""
    history = bounded_history(seed=31337, customers=CUSTOMERS)
    expected = compute(history, FAULT_SETTINGS)
    p = Pipeline(tmp_path_factory.mktemp("clean"), allowed_lateness_seconds=LATENESS_S)
    ok = False
    try:
        p.start_worker()
        p.start_exporter()
        t0 = time.monotonic()
        p.produce(history)
        p.wait_until_consumed(timeout=180)
        text = p.scrape_text()
        changes, messages = read_changes(p, quiet=3.0)
        seconds = time.monotonic() - t0
        problems = diff(expected, flatten(text, COMPARED))
        assert not problems, f"the clean run differs from the oracle: {problems}"
        assert expected[key("retention_customers")] == CUSTOMERS
        assert len(changes) > 1000 and {c[2] for c in changes} >= {
            "active",
            "at_risk_2",
            "at_risk_7",
            "churned",
        }, f"{len(changes)} changes: {Counter(c[2] for c in changes)}"
        assert messages == len(changes), "the clean run published a change twice"
        ok = True
        return Clean(
            history, expected, without_invalid(flatten_all(text)), changes, messages, seconds
        )
    finally:
        if not ok:
            print(f"\n===== clean pipeline {p.ns} logs =====\n{p.logs()}")
        p.close()
