"""Everything the tracker keeps in Redis: keys, hash fields, event flags, script arguments.

This module is the only Python that spells a stored name; the Lua scripts get the same
names from lua_header(), which is prepended to every script when it is loaded.

Key layout (every key of a shard carries the same hash tag, so it is Redis Cluster ready):
  <ns>:{s:N}:agg    shard totals (TotalsField): customers, watermark, applied offsets,
                    event and invalid counts, money
  <ns>:{s:N}:days   per-day counts (DaysField): base size, active windows
  <ns>:{s:N}:per    per-period counts (PeriodsField): cohort sizes and cells, stayed in
                    the base, lifecycle, installs, cohort value
  <ns>:{s:N}:line   day-keyed deltas (TimelineField) the reader sums up to the watermark
  <ns>:{s:N}:b:<n>  a bucket of customers: field = customer id (customer_field), value =
                    the customer's state as one blob (CUSTOMER_SLOTS, layout in customer.lua)
  <ns>:{s:N}:due    lifecycle due set: bucket number -> earliest day one of its customers is due
                    (bucket(N, number) names the bucket)
  <ns>:{s:N}:outbox lifecycle changes waiting to be produced
  <ns>:{s:N}:lock   the token of the worker publishing the shard's lifecycle changes, expiring
                    (streams/lifecycle.py): one publisher per shard at a time
  <ns>:fingerprint  the settings the state was built with (streams/guard.py)
  <ns>:dims:<dim>   breakdown codes of platforms and channels (streams/dimensions.py)

Fields of the day, period and timeline hashes are a prefix followed by numbers joined
with ':' (numbered, period_field, cell_field); breakdown counters carry a scope in
front, e.g. 'P0|' (scope()).
"""

from __future__ import annotations

import uuid
import zlib
from enum import IntFlag
from typing import NamedTuple

from core.calendar import Period
from core.settings import CUSTOMER_BUCKETS

# Breakdown dimensions and the letter that starts their codes.
DIMENSIONS = {"platform": "P", "channel": "C"}
# Dimension codes besides the registered numbers: no value given, and past the cap.
UNKNOWN, OTHER = "u", "o"
CODES_SEPARATOR = "\t"  # between an event's dimension codes, e.g. 'P0\tC3'
# The codes of an event that sets no dimension (and of a customer none has been set for).
UNSET_CODES = CODES_SEPARATOR.join(letter + UNKNOWN for letter in DIMENSIONS.values())
# The exported `value` labels of the two folding buckets, in Google Analytics' spelling.
# Parenthesised so that they read as buckets; a raw value spelled like one of them is
# put into that bucket (streams/dimensions.py), so no real value ever carries these labels.
BUCKET_LABELS = {UNKNOWN: "(not set)", OTHER: "(other)"}
SCOPE_END = "|"  # ends a breakdown scope in front of a field, e.g. 'P0|'
# The letter of each period kind in per-period fields.
PERIOD_CODES = {Period.DAY: "d", Period.WEEK: "w", Period.MONTH: "m"}


class TotalsField:
    """Fields of a shard's totals hash (<tag>:agg)."""

    CUSTOMERS = "customers"
    WATERMARK = "watermark_ms"  # newest event time applied (capped by the clock)
    PURCHASES = "purchases"
    REVENUE = "revenue_milli"
    REFUNDS = "refunds"
    REFUNDED = "refunded_milli"
    PURCHASING_CUSTOMERS = "purchasing"
    REPEAT_CUSTOMERS = "repeat"
    EVENTS_OF_TYPE = "e:"  # + event type
    INVALID_OF_REASON = "inv:"  # + rejection reason
    OFFSET_MARKER = "o:"  # + source + ':' + partition: offset after the last applied record
    PARTITION_MARK = "m:"  # + source + ':' + partition: newest event time applied from it


class DaysField:
    """Fields of a shard's per-day hash (<tag>:days), each followed by a day number."""

    BASE = "b:"  # customers in the base at the end of the day
    ACTIVE_IN_WINDOW = "a"  # + window length + ':' + day (active_window())
    LIFE_EDGES = "le:"  # active-life edges of all customers on the day (+1 starts, -1 ends)
    COHORT_LIFE_EDGES = "lc:"  # + cohort month + ':' + day: the same, of one month's cohort


class PeriodsField:
    """Fields of a shard's per-period hash (<tag>:per): prefix, period code, period number
    (a cohort's for the cohort fields), and for cells the offset from the cohort."""

    COHORT_SIZE = "z:"
    ACTIVE = "p:"
    RETURNING = "r:"  # active in the period and the one before
    RETAINED = "c:"  # cell: cohort customers active in period cohort + offset
    RETAINED_OR_LATER = "u:"  # cell: ... active in that period or a later one
    INSTALLS = "i:"
    SUBSCRIPTION_CANCELS = "sc:"
    STAYED_IN_BASE = "s:"  # in the base at the end of the period before and of this one
    STAYED_SUBSCRIBED = "ss:"  # subscribed at the end of the period before and of this one
    COHORT_PURCHASES = "vp:"  # month cohorts only, like the two below
    COHORT_NET_REVENUE = "vr:"
    # + cohort month + ':' + month: active-life edges of the cohort on the days of the month,
    # summed, and summed times their day (cohort_month_field)
    COHORT_LIFE_EDGES = "ve:"
    COHORT_LIFE_EDGE_DAYS = "vw:"
    PERIOD_BUYERS = "bp:"  # customers with a purchase on a day of the period
    PERIOD_REPEAT_BUYERS = "bq:"  # customers with two or more purchases in the period


class TimelineField:
    """Fields of a shard's timeline hash (<tag>:line): deltas keyed by the day they take
    effect, which the reader sums over all days up to the watermark."""

    SUBSCRIBERS = "sd:"
    MRR = "sm:"  # in twelfths of a thousandth: an annual plan adds its amount, a monthly 12x
    FIRST_CHURN_QUICK = "cq:"  # first churn after a tenure under the quick-churn days
    FIRST_CHURN_LATE = "cl:"
    WON_BACK_QUICK = "wq:"  # active again after that first churn
    WON_BACK_LATE = "wl:"
    # + last purchase day (or NO_PURCHASE) : frequency score : monetary score : first
    # activity day (or NOT_NEW)
    RFM_KEY = "rf:"
    RFM_NOT_NEW = "x"
    RFM_NO_PURCHASE = "n"
    # NPS respondents by group: +1 on the day an answer starts to count, -1 when it stops
    NPS_PROMOTERS = "np:"
    NPS_PASSIVES = "nq:"
    NPS_DETRACTORS = "nd:"
    # + month: active-life edges of all customers on the days of the month, summed, and
    # summed times their day (read per month, not summed up to the watermark)
    LIFE_EDGES = "ls:"
    LIFE_EDGE_DAYS = "lw:"


FIELD_GROUPS: tuple[type, ...] = (TotalsField, DaysField, PeriodsField, TimelineField)


def numbered(prefix: str, number: int, scope: str = "") -> str:
    """A field of one number: a day (day and timeline fields) or a month (cohort value)."""
    return f"{scope}{prefix}{number}"


def period_field(prefix: str, code: str, number: int, scope: str = "") -> str:
    """A per-period field: period kind code and period (or cohort) number."""
    return f"{scope}{prefix}{code}:{number}"


def cohort_month_field(prefix: str, cohort: int, number: int, scope: str = "") -> str:
    """A field of a monthly cohort and a day or month number (active-life edges)."""
    return f"{scope}{prefix}{cohort}:{number}"


def cell_field(prefix: str, code: str, cohort: int, offset: int, scope: str = "") -> str:
    """A retention cell of the per-period hash: cohort and offset from it."""
    return f"{scope}{prefix}{code}:{cohort}:{offset}"


def active_window(window: int) -> str:
    """The day-field prefix of customers active in the `window` days ending on a day."""
    return f"{DaysField.ACTIVE_IN_WINDOW}{window}:"


def scope(dimension: str, code: str) -> str:
    """The field prefix of a breakdown value's counters."""
    return f"{DIMENSIONS[dimension]}{code}{SCOPE_END}"


def names(group: type) -> dict[str, str]:
    """A field group's constants by name."""
    return {k: v for k, v in vars(group).items() if k.isupper() and isinstance(v, str)}


class Flag(IntFlag):
    """What an event does to its customer, one bit each (the scripts test the bits)."""

    ACTIVITY = 1
    CHURN = 2
    PURCHASE = 4
    REFUND = 8
    SUBSCRIPTION_ON = 16
    SUBSCRIPTION_OFF = 32
    INSTALL = 64
    NPS = 128
    ANNUAL = 256  # a subscription start or renew billed yearly (else monthly)
    NO_AMOUNT = 512  # a subscription start or renew without an amount: keeps the last one


# The scripts' arguments, described once: the Python side packs the tuples below in
# order, the scripts address the same slots through lua_header()'s tables. The batch
# script's KEYS are BATCH_KEYS (Keys methods) and then the buckets of the batch's
# customers; its ARGV are BatchArgs, SpanArgs once per partition of the batch, and
# EventArgs once per record. The sweep script's KEYS are SWEEP_KEYS and then the due
# buckets to sweep, its ARGV SweepArgs; the outbox release script's are RELEASE_KEYS and
# ReleaseArgs. Every key a script touches is in its KEYS, and all of one call's keys
# carry the same shard hash tag (one Redis Cluster slot).
BATCH_KEYS = ("totals", "days", "periods", "timeline", "due")
SWEEP_KEYS = ("due", "outbox", "lifecycle_lock", "totals")
RELEASE_KEYS = ("outbox", "lifecycle_lock")


class SweepArgs(NamedTuple):
    config: str  # JSON
    token: str  # the caller's lifecycle lock token: the script does nothing without the lock


class ReleaseArgs(NamedTuple):
    token: str  # the caller's lifecycle lock token
    published: int  # outbox entries Kafka acknowledged, trimmed from its head


class BatchArgs(NamedTuple):
    config: str  # JSON
    source: str  # the events topic and its id (streams/topic_identity.py)
    clock_ceiling: int  # wall clock plus the allowed skew (ms): the watermark's ceiling
    span_count: int  # number of SpanArgs that follow


class SpanArgs(NamedTuple):
    """Where a batch's records of one partition continue from (-1: the partition's
    start), and the offset after its last record."""

    partition: int
    start: int
    end: int


class EventArgs(NamedTuple):
    """One record's arguments to the batch script, in order; an invalid record has
    bucket_key 0 and its rejection reason as kind."""

    bucket_key: int  # index in KEYS of the customer's bucket
    partition: int
    offset: int
    event_hash: bytes | str  # hash of the event id (customers remember applied ones)
    kind: str  # event type
    flags: int = 0
    day: int = 0
    ts_ms: int = 0
    amount_milli: int = 0
    nps_score: int = -1  # -1: no score
    codes: str = ""  # breakdown codes, e.g. 'P0\tC3'
    tie_id: str = ""  # event id of subscription starts and NPS answers: breaks ts ties
    customer_field: bytes | str = b""


# The values of a customer blob, in order (customer.lua stores and reads them).
CUSTOMER_SLOTS = (
    *("o8", "due", "a", "v", "e", "f", "l", "gp", "gc", "pt"),
    *("ls", "p", "r", "q", "x", "s", "k", "sa", "st", "si"),
    *("pd", "n"),
    *("y", "sy"),
    *("pb", "pm"),  # days with a purchase, days with two or more
)


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

    def totals(self, shard: int) -> str:
        return f"{self.tag(shard)}:agg"

    def days(self, shard: int) -> str:
        return f"{self.tag(shard)}:days"

    def periods(self, shard: int) -> str:
        return f"{self.tag(shard)}:per"

    def timeline(self, shard: int) -> str:
        return f"{self.tag(shard)}:line"

    def due(self, shard: int) -> str:
        """The shard's lifecycle due set (of bucket numbers)."""
        return f"{self.tag(shard)}:due"

    def outbox(self, shard: int) -> str:
        """The shard's lifecycle changes waiting to be produced."""
        return f"{self.tag(shard)}:outbox"

    def lifecycle_lock(self, shard: int) -> str:
        """The token of the worker that sweeps and publishes the shard's lifecycle changes."""
        return f"{self.tag(shard)}:lock"

    def batch_keys(self, shard: int) -> list[str]:
        """The shard's keys in the order of BATCH_KEYS."""
        return [getattr(self, name)(shard) for name in BATCH_KEYS]

    def sweep_keys(self, shard: int) -> list[str]:
        """The shard's keys in the order of SWEEP_KEYS."""
        return [getattr(self, name)(shard) for name in SWEEP_KEYS]

    def release_keys(self, shard: int) -> list[str]:
        """The shard's keys in the order of RELEASE_KEYS."""
        return [getattr(self, name)(shard) for name in RELEASE_KEYS]

    def fingerprint(self) -> str:
        """The settings the state was built with (streams/guard.py)."""
        return f"{self.namespace}:fingerprint"

    def registry(self, dimension: str) -> str:
        return registry_key(self.namespace, dimension)

    def pattern(self) -> str:
        """A SCAN pattern matching every key of the namespace."""
        return f"{self.namespace}:*"

    def bucket_prefix(self, shard: int) -> str:
        """Bucket n of the shard is this prefix followed by n."""
        return f"{self.tag(shard)}:b:"

    def bucket(self, shard: int, number: int) -> str:
        """Bucket `number` of the shard; the due set's members are these numbers, and
        the scripts read a bucket's number back from the end of its key."""
        return f"{self.bucket_prefix(shard)}{number}"

    def customer(self, customer_id: str) -> tuple[str, bytes]:
        """The bucket hash holding the customer, and the customer's field in it."""
        crc = zlib.crc32(customer_id.encode())
        shard, bucket = crc % self.shards, crc // self.shards % self.buckets_per_shard
        return self.bucket(shard, bucket), customer_field(customer_id)


def registry_key(namespace: str, dimension: str) -> str:
    """The hash that maps a dimension's raw values to their codes (outside the shards)."""
    return f"{namespace}:dims:{dimension}"


def key_kind(key: str) -> str:
    """What a key of a namespace holds, for memory accounts."""
    if ":b:" in key:
        return "customer buckets"
    tail = key.rsplit(":", 1)[-1]
    if tail in ("agg", "days", "per", "line"):
        return "shard aggregates"
    if tail in ("due", "outbox", "lock"):
        return f"lifecycle {tail}"
    return "other"


def offset_marker(source: str, partition: int) -> str:
    """Totals field: the offset after the last applied record of a partition of the
    events topic `source` (topic@id, streams/topic_identity.py)."""
    return f"{TotalsField.OFFSET_MARKER}{source}:{partition}"


def partition_mark(source: str, partition: int) -> str:
    """Totals field: newest event time applied from a partition."""
    return f"{TotalsField.PARTITION_MARK}{source}:{partition}"


def parse_position(name: str) -> tuple[str, str, int] | None:
    """(prefix, source, partition) of an offset marker or partition mark, else None."""
    for prefix in (TotalsField.OFFSET_MARKER, TotalsField.PARTITION_MARK):
        if name.startswith(prefix):
            source, _, partition = name[len(prefix) :].rpartition(":")
            return prefix, source, int(partition)
    return None


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


def customer_of_field(name: bytes) -> str:
    """The customer id behind a bucket field (the inverse of customer_field)."""
    if len(name) == 16:
        return str(uuid.UUID(bytes=name))
    return (name[1:] if name[:1] == b"\xff" else name).decode()


def lua_header() -> str:
    """The names above as Lua locals, prepended to every script: field prefixes by group,
    flag bits, the scripts' KEYS/ARGV slots, the customer blob's slots, and the helpers
    that build composite field names."""
    tables: dict[str, dict[str, str] | dict[str, int]] = {
        group.__name__: names(group) for group in FIELD_GROUPS
    }
    tables["PeriodCode"] = {kind.name: code for kind, code in PERIOD_CODES.items()}
    tables["Flag"] = {flag.name or "": flag.value for flag in Flag}
    tables["BatchKey"] = _slots(BATCH_KEYS, 1) | {"FIRST_BUCKET": len(BATCH_KEYS) + 1}
    tables["BatchArg"] = _slots(BatchArgs._fields, 1) | {"FIRST_SPAN": len(BatchArgs._fields) + 1}
    tables["SpanArg"] = _slots(SpanArgs._fields, 0) | {"COUNT": len(SpanArgs._fields)}
    tables["EventArg"] = _slots(EventArgs._fields, 0) | {"COUNT": len(EventArgs._fields)}
    tables["SweepKey"] = _slots(SWEEP_KEYS, 1) | {"FIRST_BUCKET": len(SWEEP_KEYS) + 1}
    tables["SweepArg"] = _slots(SweepArgs._fields, 1)
    tables["ReleaseKey"] = _slots(RELEASE_KEYS, 1)
    tables["ReleaseArg"] = _slots(ReleaseArgs._fields, 1)
    tables["DimensionLetter"] = dict(DIMENSIONS)
    lines = ["-- Generated by core/schema.py lua_header(): stored names and argument slots."]
    lines += [f"local {name} = {_lua_table(values)}" for name, values in tables.items()]
    lines += [
        f"local CUSTOMER_SLOTS = {{ {', '.join(map(_lua, CUSTOMER_SLOTS))} }}",
        f"local DIMENSION_UNKNOWN, DIMENSION_OTHER = {_lua(UNKNOWN)}, {_lua(OTHER)}",
        f"local UNSET_CODES = {_lua(UNSET_CODES)}",
        f"local CODES_SEPARATOR, SCOPE_END = {_lua(CODES_SEPARATOR)}, {_lua(SCOPE_END)}",
        "local function offset_marker(source, partition)",
        "  return TotalsField.OFFSET_MARKER .. source .. ':' .. partition",
        "end",
        "local function partition_mark(source, partition)",
        "  return TotalsField.PARTITION_MARK .. source .. ':' .. partition",
        "end",
        "local function active_window(n) return DaysField.ACTIVE_IN_WINDOW .. n .. ':' end",
    ]
    return "\n".join(lines) + "\n"


def _slots(slots: tuple[str, ...], first: int) -> dict[str, int]:
    return {name.upper(): first + i for i, name in enumerate(slots)}


def _lua(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t") + "'"


def _lua_table(values: dict[str, str] | dict[str, int]) -> str:
    return "{ " + ", ".join(f"{k} = {_lua(v)}" for k, v in values.items()) + " }"
