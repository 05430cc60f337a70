"""The oracle's vocabulary: its settings, the key of a sample, and how it reads an
event's timestamp."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A sample: (name, ((label, value), ...sorted)), the shape flatten() gives a scrape.
Key = tuple[str, tuple[tuple[str, str], ...]]
EventLike = Mapping[str, Any] | bytes | bytearray


@dataclass(frozen=True)
class OracleSettings:
    tz: str = "UTC"
    week_start: int = 0  # Monday, as date.weekday()
    churn_window_days: int = 30
    subscription_grace_days: int = 7
    allowed_lateness_seconds: int = 0
    cohorts_kept: int = 12
    activity_types: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {
                "install",
                "app_open",
                "session",
                "purchase",
                "subscription_start",
                "subscription_renew",
            }
        )
    )
    churn_types: frozenset[str] = frozenset({"uninstall", "subscription_cancel"})
    purchase_types: frozenset[str] = frozenset({"purchase"})
    refund_types: frozenset[str] = frozenset({"refund"})
    install_type: str = "install"
    subscribe_types: frozenset[str] = frozenset({"subscription_start", "subscription_renew"})
    cancel_type: str = "subscription_cancel"
    nps_type: str = "nps"
    nps_window_days: int = 30
    quick_churn_days: int = 7
    clv_max_lifespan_years: float = 5
    rfm_recency_days: tuple[int, int, int, int] = (7, 14, 30, 60)  # R = 5, 4, 3, 2 if r <= ...
    rfm_frequency: tuple[int, ...] = (2, 3, 5, 10)
    rfm_monetary: tuple[int, ...] = (50, 150, 500, 1500)  # currency units
    rfm_new_days: int = 14
    dimension_cap: int = 10  # distinct values kept per breakdown dimension
    currency: str = "USD"  # the reporting currency
    # (code, reporting-currency units per unit of it); see money.py
    rates: tuple[tuple[str, float], ...] = ()


def pure_activity(s: OracleSettings) -> frozenset[str]:
    """Types whose only effect is to make the customer active that day."""
    other = (
        s.churn_types
        | s.purchase_types
        | s.refund_types
        | s.subscribe_types
        | {s.install_type, s.cancel_type, s.nps_type}
    )
    return s.activity_types - other


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def ts_ms(value: str | int | float) -> int:
    """RFC 3339 string (with offset) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        assert dt.tzinfo is not None, value
        return (dt - EPOCH) // timedelta(milliseconds=1)
    return int(value)
