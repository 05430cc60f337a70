"""Pipeline: the worker's health — throughput, invalid events, lag, batch and Redis latency.

The consumer lag and invalid share panels turn red at the thresholds of the
ConsumerLagHigh and InvalidEventsRate alerts (monitoring/config.py).
"""

from __future__ import annotations

from monitoring.board import Board
from monitoring.config import PIPELINE, TARGETS_SELECTOR, THRESHOLDS
from monitoring.panels import (
    PERCENT,
    RATE_WINDOW,
    Look,
    Query,
    stat_panel,
    timeseries_panel,
)

CONSUMED_RATE = f"sum(rate(retention_consumed_events_total[{RATE_WINDOW}]))"
BATCH_RATE = f"sum(rate(retention_batch_seconds_count[{RATE_WINDOW}]))"

# The panels the pipeline alerts link to.
TARGETS_UP = "Targets up"
INVALID_BY_REASON = "Invalid events/s by reason"
LAG_BY_PARTITION = "Consumer lag by partition"
THROUGHPUT = "Consumed events/s and events per batch"
BACKENDS_UP = "Worker backends up"


def _quantile(histogram: str, quantile: str, legend: str) -> Query:
    """One quantile of a histogram over all workers."""
    return Query(
        f"histogram_quantile({quantile}, sum by (le) (rate({histogram}_bucket[{RATE_WINDOW}])))",
        legend,
    )


def _median_and_p99(histogram: str) -> tuple[Query, Query]:
    return _quantile(histogram, "0.5", "p50"), _quantile(histogram, "0.99", "p99")


PANELS = [
    stat_panel("Consumed events/s", Query(CONSUMED_RATE), look=Look(width=4, height=4, unit="ops")),
    stat_panel(
        "Consumer lag",
        Query("sum(retention_consumer_lag)"),
        look=Look(
            width=4,
            height=4,
            thresholds=((None, "green"), (1000, "orange"), (THRESHOLDS.consumer_lag_max, "red")),
        ),
    ),
    stat_panel(
        "Invalid share",
        Query(f"sum(rate(retention_events_invalid_total[{RATE_WINDOW}])) / {CONSUMED_RATE}"),
        look=Look(
            width=4,
            height=4,
            unit=PERCENT,
            thresholds=((None, "green"), (0.01, "orange"), (THRESHOLDS.invalid_share_max, "red")),
        ),
    ),
    stat_panel(
        "Watermark age",
        Query("time() - max(retention_watermark_seconds)"),
        look=Look(width=4, height=4, unit="s"),
    ),
    stat_panel(
        TARGETS_UP,
        Query(f"sum(up{{{TARGETS_SELECTOR}}})"),
        look=Look(
            width=4, height=4, description="Scrape targets answering: exporter(s) and worker(s)."
        ),
    ),
    stat_panel("Batches/s", Query(BATCH_RATE), look=Look(width=4, height=4, unit="ops")),
    timeseries_panel(
        "Events/s by type",
        Query(f"sum by (type) (rate(retention_events_total[{RATE_WINDOW}]))", "{{type}}"),
        look=Look(width=12, unit="ops", description="Unique valid events applied to Redis."),
    ),
    timeseries_panel(
        INVALID_BY_REASON,
        Query(
            f"sum by (reason) (rate(retention_events_invalid_total[{RATE_WINDOW}]))", "{{reason}}"
        ),
        look=Look(width=12, unit="ops", description="Dead-lettered to events.dlq."),
    ),
    timeseries_panel(
        LAG_BY_PARTITION,
        Query("sum by (partition) (retention_consumer_lag)", "partition {{partition}}"),
        look=Look(width=12),
    ),
    timeseries_panel(
        THROUGHPUT,
        Query(CONSUMED_RATE, "consumed/s"),
        Query(f"{CONSUMED_RATE} / {BATCH_RATE}", "events per batch"),
        look=Look(width=12),
    ),
    timeseries_panel(
        "Batch latency",
        *_median_and_p99("retention_batch_seconds"),
        look=Look(
            width=12, unit="s", description="Decode, dead-letter, Redis apply and offset commit."
        ),
    ),
    timeseries_panel(
        "Redis round trip per batch",
        *_median_and_p99("retention_redis_seconds"),
        look=Look(width=12, unit="s"),
    ),
    timeseries_panel(
        BACKENDS_UP,
        Query("min by (backend) (retention_backend_up)", "{{backend}}"),
        look=Look(
            width=12,
            description="0 while the worker retries an operation against Redis, Kafka "
            "or the dead-letter topic.",
        ),
    ),
    timeseries_panel(
        "Backend retries/s",
        Query(
            f"sum by (backend) (rate(retention_backend_retries_total[{RATE_WINDOW}]))",
            "{{backend}}",
        ),
        look=Look(width=12, unit="ops"),
    ),
]

BOARD = Board(
    PIPELINE,
    "Events/s, invalid events, consumer lag, batch and Redis latency, backends.",
    PANELS,
    time_from="now-1h",
)
