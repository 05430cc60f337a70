"""What the generator is told: the shape of a business (`Profile`), the return curve, and
the run's size, calendar and seed (`SimConfig`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from core.errors import CommandError


@dataclass(frozen=True)
class Profile:
    """What customers do, by kind of business. The fields after `nps` add behaviours the
    tracker must handle but plain app or shop traffic rarely shows; 0 (or no plans)
    leaves a behaviour out and draws no random number for it."""

    sessions: float  # mean extra sessions on an active day
    buy: float  # chance of a purchase on an active day
    spend_mu: float  # lognormal spend parameters (in the run's currency)
    spend_sigma: float
    subscribe: float  # chance a new customer subscribes in the first days
    price: float  # monthly subscription price
    nps: float  # chance a customer answers an NPS survey
    plans: tuple[float, ...] = ()  # subscription prices to draw from instead of `price`
    plan_change: float = 0.0  # chance a renewal moves to another of the plans
    cancel: float = 0.0  # chance a subscription is cancelled 1-70 days after it starts
    resubscribe: float = 0.0  # chance a cancelled subscriber subscribes again within 20 days
    refund: float = 0.0  # chance a purchase is refunded the next day, in full or in part
    fine_amounts: float = 0.0  # share of purchases priced to 4 decimals
    no_amount: float = 0.0  # share of refunds and subscription starts sent without an amount
    whales: float = 0.0  # share of customers who come back twice as often and buy big, often
    lapsers: float = 0.0  # share who stay away 31-38 days after their first week, then return
    reinstall: float = 0.0  # chance that a customer who uninstalls installs again
    no_install: float = 0.0  # share whose first event is an app_open, not an install
    midnight: float = 0.0  # share with a session just before a local midnight, an open after


PROFILES = {
    "app": Profile(1.5, 0.04, 1.8, 0.6, 0.06, 9.99, 0.05),
    "shop": Profile(0.5, 0.30, 3.6, 0.7, 0.0, 0.0, 0.08),
    # Mostly one app_open a day, few purchases: the benchmark's mix (bench/README.md).
    "bench": Profile(0.5, 0.06, 3.0, 0.6, 0.03, 9.99, 0.07, cancel=0.2, refund=0.05),
    # Every behaviour at once, for the tests: the tracker's hard cases in one history.
    "varied": Profile(
        0.8,
        0.12,
        3.0,
        0.9,
        0.2,
        9.99,
        0.15,
        plans=(4.99, 9.99, 9.99, 19.99),
        plan_change=0.15,
        cancel=0.45,
        resubscribe=0.4,
        refund=0.08,
        fine_amounts=0.03,
        no_amount=0.04,
        whales=0.06,
        lapsers=0.2,
        reinstall=0.35,
        no_install=0.05,
        midnight=0.05,
    ),
}


@dataclass(frozen=True)
class Curve:
    """P(active on day k after install | not churned): power day1*k^-b, or exp day1*e^-(k-1)/tau."""

    kind: str
    day1: float
    shape: float

    @classmethod
    def parse(cls, spec: str) -> Curve:
        match = re.fullmatch(r"(power|exp):([0-9.]+):([0-9.]+)", spec.strip())
        if not match:
            raise CommandError(
                f"--curve {spec!r}: write power:DAY1:EXPONENT (e.g. power:0.4:0.5) "
                "or exp:DAY1:TAU_DAYS (e.g. exp:0.4:10)"
            )
        curve = cls(match[1], float(match[2]), float(match[3]))
        if not 0 < curve.day1 <= 1 or curve.shape <= 0:
            raise CommandError(f"--curve {spec!r}: DAY1 must be in (0, 1], the shape above 0")
        return curve

    def p(self, k: int) -> float:
        if k <= 0:
            return 1.0
        if self.kind == "power":
            return min(1.0, self.day1 * math.pow(k, -self.shape))
        return min(1.0, self.day1 * math.exp(-(k - 1) / self.shape))

    def __str__(self) -> str:
        return f"{self.kind}:{self.day1:g}:{self.shape:g}"


@dataclass(frozen=True)
class SimConfig:
    start: date
    days: int = 42
    seed: int = 7
    installs: float = 100.0  # mean installs per day
    customers: int = 0  # when set: exactly this many customers, install days drawn uniformly
    ids: str = "plain"  # customer ids: plain, uuid (36 characters) or odd (see ODD_IDS)
    weekly: float = 0.3  # seasonality amplitude: weekends get up to +30%
    curve: Curve = Curve("power", 0.4, 0.5)
    hazard: float = 0.01  # daily chance that a customer churns for good
    spikes: dict[int, float] = field(default_factory=dict)  # day index -> hazard factor
    profile: str = "app"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    week_start: int = 0  # Monday
    lateness_ms: int = 0
    currency: str = "USD"  # of every amount: the reporting currency, so nothing is converted


def parse_spikes(specs: list[str], start: date, days: int) -> dict[int, float]:
    """`DAY:FACTOR` where DAY is an ISO date or a day index from the start (0-based)."""
    out: dict[int, float] = {}
    for spec in specs:
        day, sep, factor = spec.rpartition(":")
        try:
            index = (date.fromisoformat(day) - start).days if "-" in day else int(day)
            value = float(factor)
        except ValueError:
            index, value = -1, -1.0
        if not sep or value <= 0:
            raise CommandError(
                f"--churn-spike {spec!r}: write DAY:FACTOR, e.g. 2026-03-20:8 or 20:8"
            )
        if not 0 <= index < days:
            raise CommandError(f"--churn-spike {spec!r}: day is outside the {days} simulated days")
        out[index] = value
    return out
