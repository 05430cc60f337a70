"""The event generator: synthetic app or shop traffic from a seed.

Customers install with weekly seasonality, come back on day k after install with a
configurable probability curve (power-law or exponential decay), churn for good at a
daily hazard (with injectable spikes), and buy, subscribe and answer NPS on the way.
The same config and seed give the same events.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.calendar import Calendar, date_to_day
from core.errors import CommandError

PLATFORM_MIX = {"ios": 0.45, "android": 0.45, "web": 0.10}
CHANNEL_MIX = {"organic": 0.5, "paid": 0.3, "referral": 0.15, "email": 0.05}
NPS_WEIGHTS = [2, 1, 1, 1, 2, 2, 3, 5, 8, 10, 9]  # scores 0..10: mostly 7-10, some detractors


@dataclass(frozen=True)
class Profile:
    """What a customer does on an active day, by kind of business."""

    sessions: float  # mean extra sessions on an active day
    buy: float  # chance of a purchase on an active day
    spend_mu: float  # lognormal spend parameters (EUR)
    spend_sigma: float
    subscribe: float  # chance a new customer subscribes in the first days
    price: float  # monthly subscription price
    nps: float  # chance a customer answers an NPS survey


PROFILES = {
    "app": Profile(1.5, 0.04, 1.8, 0.6, 0.06, 9.99, 0.05),
    "shop": Profile(0.5, 0.30, 3.6, 0.7, 0.0, 0.0, 0.08),
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
    weekly: float = 0.3  # seasonality amplitude: weekends get up to +30%
    curve: Curve = Curve("power", 0.4, 0.5)
    hazard: float = 0.01  # daily chance that a customer churns for good
    spikes: dict[int, float] = field(default_factory=dict)  # day index -> hazard factor
    profile: str = "app"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    week_start: int = 0  # Monday
    lateness_ms: int = 0


@dataclass(frozen=True, slots=True)
class SimEvent:
    ts_ms: int
    seq: int  # generation order, breaks ties so the output order is deterministic
    customer: str
    kind: str
    day: int  # day index from the start, in the configured zone
    extra: tuple[tuple[str, Any], ...] = ()
    platform: str = ""
    channel: str = ""

    def as_dict(self, seed: int) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": f"sim{seed}-{self.seq:08d}",
            "customer_id": self.customer,
            "type": self.kind,
            "ts": _rfc3339(self.ts_ms),
            "platform": self.platform,
            "channel": self.channel,
        }
        event.update(self.extra)
        return event


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


class Simulator:
    """Generates one deterministic history from a config."""

    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.profile = PROFILES[config.profile]
        self.rng = random.Random(config.seed)
        self.seq = 0
        self.events: list[SimEvent] = []
        self.churned_on: Counter[int] = Counter()
        calendar, first = Calendar(config.zone), date_to_day(config.start)
        # [first ms, first ms of the next day) of each simulated local day
        self._bounds = [
            (calendar.day_start_ms(first + i), calendar.day_start_ms(first + i + 1))
            for i in range(config.days)
        ]

    def run(self) -> list[SimEvent]:
        for day in range(self.c.days):
            for n in range(self._installs(day)):
                self._customer(f"u{self.c.seed}-{day:04d}-{n:05d}", day)
        self.events.sort(key=lambda e: (e.ts_ms, e.seq))
        return self.events

    def _installs(self, day: int) -> int:
        weekday = (self.c.start + timedelta(days=day)).weekday()
        mean = self.c.installs * (1 + self.c.weekly * math.cos(2 * math.pi * (weekday - 5.5) / 7))
        return _poisson(self.rng, max(mean, 0.0))

    def _customer(self, cid: str, first: int) -> None:
        rng, p = self.rng, self.profile
        who = (_pick(rng, PLATFORM_MIX), _pick(rng, CHANNEL_MIX))
        self._active_day(cid, first, who, install=True)
        subscribed = rng.random() < p.subscribe
        sub_day = first + rng.randint(0, 2)
        answers_nps = rng.random() < p.nps
        for day in range(first, self.c.days):
            if subscribed and day == sub_day:
                self._emit(cid, day, "subscription_start", who, amount=p.price)
            elif subscribed and day > sub_day and (day - sub_day) % 30 == 0:
                self._emit(cid, day, "subscription_renew", who, amount=p.price)
            if day == first:
                continue
            if rng.random() < self.c.hazard * self.c.spikes.get(day, 1.0):
                self._churn(cid, day, who, subscribed and day >= sub_day)
                return
            if rng.random() < self.c.curve.p(day - first):
                self._active_day(cid, day, who)
                if answers_nps:
                    answers_nps = False
                    score = rng.choices(range(11), weights=NPS_WEIGHTS)[0]
                    self._emit(cid, day, "nps", who, score=score)

    def _active_day(self, cid: str, day: int, who: tuple[str, str], install: bool = False) -> None:
        rng, p = self.rng, self.profile
        opened = self._emit(cid, day, "install" if install else "app_open", who)
        for _ in range(_poisson(rng, p.sessions)):
            self._emit(cid, day, "session", who, after=opened)
        if rng.random() < p.buy:
            amount = round(rng.lognormvariate(p.spend_mu, p.spend_sigma), 2)
            self._emit(cid, day, "purchase", who, after=opened, amount=amount)

    def _churn(self, cid: str, day: int, who: tuple[str, str], subscriber: bool) -> None:
        self.churned_on[day] += 1
        if subscriber:
            self._emit(cid, day, "subscription_cancel", who)
        elif self.rng.random() < 0.5:
            self._emit(cid, day, "uninstall", who)

    def _emit(
        self,
        cid: str,
        day: int,
        kind: str,
        who: tuple[str, str],
        after: int | None = None,
        **extra: float | int,
    ) -> int:
        """Add one event at a random time of local day `day` (not before `after`)."""
        lo, hi = self._bounds[day]
        fields: tuple[tuple[str, Any], ...] = tuple(extra.items())
        if "amount" in extra:
            fields += (("currency", "EUR"),)
        ts = self.rng.randrange(max(lo, after or lo), hi)
        self.seq += 1
        self.events.append(SimEvent(ts, self.seq, cid, kind, day, fields, *who))
        return ts


def _rfc3339(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal for large ones."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    return rng.choices(list(mix), weights=list(mix.values()))[0]
