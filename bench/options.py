"""The benchmark's command line: what to measure, how much of it, and where.

See bench/README.md for what each option changes in the figures.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from bench.worker import DEFAULT_SHARDS
from retention.stack.settings import StackSettings

# the local stack the bench runs against (RETENTION_* ports, RETENTION_STATE)
STACK = StackSettings()
DESCRIPTION = "Run the whole benchmark against the local stack and report."


@dataclass(frozen=True, slots=True)
class Options:
    """The parsed command line (recorded in the results JSON as `options`)."""

    customers: int
    events: int
    runs: int
    naive_events: int
    naive_seconds: float
    latency_seconds: float
    scrapes: int
    profile: bool
    profile_seconds: int
    memory: bool
    private_redis: bool
    keep: bool
    bootstrap: str
    redis_url: str
    partitions: int
    shards: int
    sample: int


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line; --events defaults to min(1M, 4 x customers)."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=DESCRIPTION)
    p.add_argument(
        "--customers",
        type=int,
        default=1_000_000,
        help="customers in the 90-day history for memory and scrape (default 1M)",
    )
    p.add_argument(
        "--events",
        type=int,
        default=0,
        help="records per throughput topic (default min(1M, 4 x customers))",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs of limit, naive, tracker, latency (0: only the memory and scrape phase)",
    )
    p.add_argument(
        "--naive-events",
        type=int,
        default=50_000,
        help="events the naive agent is timed over (after a warm-up)",
    )
    p.add_argument("--naive-seconds", type=float, default=40.0, help="time cap of one naive run")
    p.add_argument(
        "--latency-seconds", type=float, default=30.0, help="paced production per latency run"
    )
    p.add_argument("--scrapes", type=int, default=10, help="timed /metrics scrapes")
    p.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the extra py-spy run of the worker",
    )
    p.add_argument(
        "--profile-seconds",
        type=int,
        default=60,
        help="py-spy sampling time (on the memory-fill worker, from its first commit)",
    )
    p.add_argument(
        "--private-redis",
        action="store_true",
        help="run a dedicated redis-server (same binary and encoding settings as the "
        "stack's Redis) so other users of the stack's Redis do not share its single thread",
    )
    p.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the N-customer memory and scrape phase",
    )
    p.add_argument("--keep", action="store_true", help="leave topics, groups and keys behind")
    p.add_argument("--bootstrap", default=STACK.kafka_bootstrap)
    p.add_argument("--redis-url", default=STACK.redis_url)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument(
        "--shards",
        type=int,
        default=DEFAULT_SHARDS,
        help=f"RETENTION_SHARDS for worker and exporter (default: the worker's, {DEFAULT_SHARDS})",
    )
    p.add_argument(
        "--sample", type=int, default=2000, help="customer hashes sampled for MEMORY USAGE"
    )
    a = p.parse_args(argv)
    events = a.events or min(1_000_000, 4 * a.customers)
    return Options(
        customers=a.customers,
        events=events,
        runs=a.runs,
        naive_events=a.naive_events,
        naive_seconds=a.naive_seconds,
        latency_seconds=a.latency_seconds,
        scrapes=a.scrapes,
        profile=a.profile,
        profile_seconds=a.profile_seconds,
        memory=a.memory,
        private_redis=a.private_redis,
        keep=a.keep,
        bootstrap=a.bootstrap,
        redis_url=a.redis_url,
        partitions=a.partitions,
        shards=a.shards,
        sample=a.sample,
    )
