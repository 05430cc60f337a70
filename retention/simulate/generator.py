"""The event generator: synthetic app or shop traffic from a seed.

Customers install with weekly seasonality (or, given a fixed number of customers, on
days drawn uniformly), come back on day k after install with a configurable probability
curve (power-law or exponential decay), churn for good at a daily hazard (with
injectable spikes), and buy, subscribe and answer NPS on the way. The profile may add
refunds, whales, lapsers, reinstalls, plan changes and more (`config.Profile`). The
same config gives the same events; `delivery` decides the order they are sent in.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.calendar import Calendar, date_to_day
from retention.simulate.config import PROFILES, SimConfig

PLATFORM_MIX = {"ios": 0.45, "android": 0.45, "web": 0.10}
CHANNEL_MIX = {"organic": 0.5, "paid": 0.3, "referral": 0.15, "email": 0.05}
NPS_WEIGHTS = [2, 1, 1, 1, 2, 2, 3, 5, 8, 10, 9]  # scores 0..10: mostly 7-10, some detractors
# Customer ids that exercise key handling: hash-tag braces, colons, spaces, non-ASCII.
ODD_IDS = ("user:{7}", "a b", "ü-ñ-42", "{s:3}", "x" * 128, "c:" * 20)
NEAR_MIDNIGHT_MS = 360_000  # "just before/after midnight": within 6 minutes


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
            "ts": rfc3339(self.ts_ms),
            "platform": self.platform,
            "channel": self.channel,
        }
        event.update(self.extra)
        return event


@dataclass
class _Life:
    """Per-customer traits drawn once at install."""

    whale: bool = False
    away: range = range(0)  # days a lapser stays away
    anchor: int = 0  # the curve's day 0: the install, or a lapser's return


@dataclass
class _Subscription:
    start: int
    price: float
    cancel: int | None = None  # day of a cancel the customer chose (not a churn)


def uuid_customer_id(index: int, seed: int) -> str:
    """A stable, random-looking UUID-shaped id for customer `index` (36 characters, as
    RudderStack/Segment anonymous ids are; the key name is part of a customer's cost)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest))


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
        """Every customer's events, in time order."""
        if self.c.customers:
            for n in range(self.c.customers):
                self._customer(self._customer_id(n), self.rng.randrange(self.c.days))
        else:
            for day in range(self.c.days):
                for n in range(self._installs(day)):
                    self._customer(f"u{self.c.seed}-{day:04d}-{n:05d}", day)
        self.events.sort(key=lambda e: (e.ts_ms, e.seq))
        return self.events

    def _customer_id(self, n: int) -> str:
        if self.c.ids == "uuid":
            return uuid_customer_id(n, self.c.seed)
        if self.c.ids == "odd" and n < len(ODD_IDS):
            return ODD_IDS[n]
        return f"u{self.c.seed}-{n:06d}"

    def _installs(self, day: int) -> int:
        weekday = (self.c.start + timedelta(days=day)).weekday()
        mean = self.c.installs * (1 + self.c.weekly * math.cos(2 * math.pi * (weekday - 5.5) / 7))
        return _poisson(self.rng, max(mean, 0.0))

    def _chance(self, p: float) -> bool:
        """A draw for a profile behaviour; none at all when the profile leaves it out."""
        return p > 0 and self.rng.random() < p

    def _customer(self, cid: str, first: int) -> None:
        rng, p = self.rng, self.profile
        who = (_pick(rng, PLATFORM_MIX), _pick(rng, CHANNEL_MIX))
        life = self._life(first)
        install = not self._chance(p.no_install)
        self._active_day(cid, first, who, life, install=install)
        subscribed = rng.random() < p.subscribe
        sub_day = first + rng.randint(0, 2)
        sub = self._subscription(sub_day) if subscribed else None
        answers_nps = rng.random() < p.nps
        if self._chance(p.midnight):
            self._around_midnight(cid, rng.randrange(first, self.c.days), who)
        for day in range(first, self.c.days):
            if sub is not None:
                sub = self._subscription_day(cid, day, who, sub)
            if day == first or day in life.away:
                continue
            if life.away and day == life.away.stop:  # a lapser is back
                life.anchor = day
                self._active_day(cid, day, who, life)
                continue
            if rng.random() < self.c.hazard * self.c.spikes.get(day, 1.0):
                self._churn(cid, day, who, sub is not None and day >= sub.start, life)
                return
            chance = self.c.curve.p(day - life.anchor)
            if rng.random() < (min(1.0, 2 * chance) if life.whale else chance):
                self._active_day(cid, day, who, life)
                if answers_nps:
                    answers_nps = False
                    score = rng.choices(range(11), weights=NPS_WEIGHTS)[0]
                    self._emit(cid, day, "nps", who, score=score)

    def _life(self, first: int) -> _Life:
        rng, p = self.rng, self.profile
        life = _Life(whale=self._chance(p.whales), anchor=first)
        if self._chance(p.lapsers):
            leaves = first + rng.randint(2, 8)
            life.away = range(leaves, leaves + rng.randint(31, 38))
        return life

    def _active_day(
        self, cid: str, day: int, who: tuple[str, str], life: _Life, install: bool = False
    ) -> None:
        rng, p = self.rng, self.profile
        opened = self._emit(cid, day, "install" if install else "app_open", who)
        for _ in range(_poisson(rng, p.sessions)):
            self._emit(cid, day, "session", who, after=opened)
        if rng.random() < (0.6 if life.whale else p.buy):
            amount = self._price(life.whale)
            self._emit(cid, day, "purchase", who, after=opened, amount=amount)
            if self._chance(p.refund) and day + 1 < self.c.days:
                back = amount if rng.random() < 0.6 else round(amount * rng.uniform(0.1, 0.9), 2)
                missing = self._chance(p.no_amount)
                self._emit(cid, day + 1, "refund", who, amount=None if missing else back)

    def _price(self, whale: bool) -> float:
        """A purchase amount: lognormal with 2 decimals; a whale's is bigger; a few are
        quantity x unit price less a discount, to 4 decimals but clear of rounding ties
        at the thousandths the tracker keeps."""
        rng, p = self.rng, self.profile
        if whale:
            return round(rng.uniform(40.0, 400.0), 2)
        if self._chance(p.fine_amounts):
            while True:
                amount = round(rng.randint(1, 4) * rng.uniform(1, 60) * rng.uniform(0.7, 1), 4)
                if abs(amount * 1000 % 1 - 0.5) > 1e-6:
                    return amount
        return round(rng.lognormvariate(p.spend_mu, p.spend_sigma), 2)

    def _subscription(self, day: int) -> _Subscription:
        rng, p = self.rng, self.profile
        sub = _Subscription(day, rng.choice(p.plans) if p.plans else p.price)
        if self._chance(p.cancel):
            sub.cancel = day + rng.randint(1, 70)
        return sub

    def _subscription_day(
        self, cid: str, day: int, who: tuple[str, str], sub: _Subscription
    ) -> _Subscription | None:
        """Start, renew every 30 days, or cancel (and maybe subscribe again) on `day`;
        the subscription that runs after it, if any."""
        rng, p = self.rng, self.profile
        if day == sub.start:
            missing = self._chance(p.no_amount)
            self._emit(cid, day, "subscription_start", who, amount=None if missing else sub.price)
        elif day > sub.start and (day - sub.start) % 30 == 0 and day != sub.cancel:
            if p.plans and self._chance(p.plan_change):
                sub.price = rng.choice(p.plans)
            self._emit(cid, day, "subscription_renew", who, amount=sub.price)
        if day != sub.cancel:
            return sub
        self._emit(cid, day, "subscription_cancel", who)
        if not self._chance(p.resubscribe):
            return None
        again = self._subscription(day + rng.choice((0, 1, 3, 7, 14, 20)))
        return self._subscription_day(cid, day, who, again) if again.start == day else again

    def _churn(
        self, cid: str, day: int, who: tuple[str, str], subscriber: bool, life: _Life
    ) -> None:
        self.churned_on[day] += 1
        if subscriber:
            self._emit(cid, day, "subscription_cancel", who)
        elif self.rng.random() < 0.5:
            self._emit(cid, day, "uninstall", who)
            if self._chance(self.profile.reinstall):
                self._reinstall(cid, day + self.rng.randint(1, 20), who, life)

    def _reinstall(self, cid: str, back: int, who: tuple[str, str], life: _Life) -> None:
        """Install again on day `back`, and use the app on some of the next days."""
        for day in range(back, min(self.c.days, back + 6)):
            if day == back or self.rng.random() < 0.4:
                self._active_day(cid, day, who, life, install=day == back)

    def _around_midnight(self, cid: str, day: int, who: tuple[str, str]) -> None:
        """A session just before the end of local day `day`, an app_open just after."""
        end = self._bounds[day][1]
        self._emit(cid, day, "session", who, after=end - NEAR_MIDNIGHT_MS)
        if day + 1 < self.c.days:
            self._emit(cid, day + 1, "app_open", who, before=end + NEAR_MIDNIGHT_MS)

    def _emit(
        self,
        cid: str,
        day: int,
        kind: str,
        who: tuple[str, str],
        after: int | None = None,
        before: int | None = None,
        amount: float | None = None,
        score: int | None = None,
    ) -> int:
        """Add one event at a random time of local day `day`, in [after, before)."""
        lo, hi = self._bounds[day]
        fields: tuple[tuple[str, Any], ...] = ()
        if amount is not None:
            fields += (("amount", amount), ("currency", self.c.currency))
        if score is not None:
            fields += (("score", score),)
        ts = self.rng.randrange(max(lo, after or lo), min(hi, before or hi))
        self.seq += 1
        self.events.append(SimEvent(ts, self.seq, cid, kind, day, fields, *who))
        return ts


def rfc3339(ts_ms: int) -> str:
    """Epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
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
