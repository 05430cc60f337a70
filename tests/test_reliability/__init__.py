"""Faults end to end: crashes, backend restarts, a lost Redis, re-sent and hostile records.

Every fault run is held to a clean run over the same events, sample by sample: the
oracle's expected samples (tests/oracle/) and every `retention_*` sample the clean
run's exporter showed (breakdowns included), and, for the customer-lifecycle topic,
the set of distinct (customer, from, to, at) changes the clean run published.

The histories of the lifecycle comparisons are delivered in time order up to a bounded
jitter that the allowed lateness covers, so which day a change falls on does not depend
on how the records were batched: a fault run must publish every change of the clean
run (duplicates allowed) and no change the clean run did not publish.

support.py holds what the tests share, conftest.py the clean run; one test module per
fault: test_crashes (SIGKILL), test_restarts (Redis and Kafka restarted; these restart
the shared services), test_redis_emptied, test_refeed, test_hostile_records (with the
generator in hostile_records.py) and test_dead_letter_reasons.
"""
