"""Names of everything the tracker keeps in Redis: keys, customer fields, period codes.

Key layout (every key of a shard carries the same hash tag, so it is Redis Cluster ready):
  <ns>:{s:N}:agg   customers, watermark, applied offsets, event and invalid counts
  <ns>:{s:N}:days  per-day base size and active-window counts
  <ns>:{s:N}:per   per-period cohort sizes and cells, stayed-in-base, lifecycle, value
  <ns>:{s:N}:line  day-keyed deltas and counts summed up to the watermark by the exporter
  <ns>:{s:N}:b:<n> a bucket of customers: field = customer id (customer_field), value =
                   the customer's state as one binary blob (layout in customer.lua)
  <ns>:{s:N}:due   lifecycle due set: bucket number -> earliest day one of its customers is due
  <ns>:{s:N}:outbox lifecycle changes waiting to be produced
  <ns>:fingerprint the settings the state was built with (streams/guard.py)
  <ns>:dims:<dimension> breakdown codes of platforms and channels (streams/dimensions.py)
"""

from __future__ import annotations

import uuid
import zlib

from core.calendar import Period
from core.settings import CUSTOMER_BUCKETS

# Breakdown dimensions and their one-letter prefixes in the per-period fields.
DIMENSIONS = {"platform": "P", "channel": "C"}
UNKNOWN, OTHER = "u", "o"
# The letter of each period kind in per-period fields.
PERIOD_CODES = {Period.DAY: "d", Period.WEEK: "w", Period.MONTH: "m"}


def registry_key(namespace: str, dimension: str) -> str:
    """The hash that maps a dimension's raw values to their codes."""
    return f"{namespace}:dims:{dimension}"


class Keys:
    """Names of a namespace's keys; the only place that spells them."""

    def __init__(self, namespace: str, shards: int, buckets: int = CUSTOMER_BUCKETS) -> None:
        self.namespace = namespace
        self.shards = shards
        self.buckets_per_shard = max(1, buckets // shards)

    def shard_of(self, customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % self.shards

    def tag(self, shard: int) -> str:
        return f"{self.namespace}:{{s:{shard}}}"

    def aggregates(self, shard: int) -> tuple[str, str, str, str]:
        tag = self.tag(shard)
        return f"{tag}:agg", f"{tag}:days", f"{tag}:per", f"{tag}:line"

    def lifecycle(self, shard: int) -> tuple[str, str]:
        """The shard's lifecycle due set (of buckets) and outbox."""
        tag = self.tag(shard)
        return f"{tag}:due", f"{tag}:outbox"

    def fingerprint(self) -> str:
        """The settings the state was built with (streams/guard.py)."""
        return f"{self.namespace}:fingerprint"

    @staticmethod
    def offset_marker(source: str, partition: int) -> str:
        """Field of a shard's totals: the offset after the last applied record of a
        partition of the events topic `source` (apply_batch.lua writes it)."""
        return f"o:{source}:{partition}"

    @staticmethod
    def partition_mark(source: str, partition: int) -> str:
        """Field of a shard's totals: newest event time applied from a partition."""
        return f"m:{source}:{partition}"

    def bucket_prefix(self, shard: int) -> str:
        """Bucket n of the shard is this prefix followed by n."""
        return f"{self.tag(shard)}:b:"

    def customer(self, customer_id: str) -> tuple[str, bytes]:
        """The bucket hash holding the customer, and the customer's field in it."""
        crc = zlib.crc32(customer_id.encode())
        shard, bucket = crc % self.shards, crc // self.shards % self.buckets_per_shard
        return f"{self.bucket_prefix(shard)}{bucket}", customer_field(customer_id)


def customer_field(customer_id: str) -> bytes:
    """A customer's field in its bucket: a canonical UUID as its 16 raw bytes (20 bytes
    less per customer), any other id as UTF-8, behind a 0xff byte if it is 16 bytes long
    too (0xff never occurs in UTF-8). customer.lua customer_id reverses it."""
    if len(customer_id) == 36:
        try:
            parsed = uuid.UUID(customer_id)
        except ValueError:
            parsed = None
        if parsed is not None and str(parsed) == customer_id:
            return parsed.bytes
    raw = customer_id.encode()
    return b"\xff" + raw if len(raw) == 16 else raw


def customer_of_field(field: bytes) -> str:
    """The customer id behind a bucket field (the inverse of customer_field)."""
    if len(field) == 16:
        return str(uuid.UUID(bytes=field))
    return (field[1:] if field[:1] == b"\xff" else field).decode()
