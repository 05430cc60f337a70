"""Deterministic synthetic event history, in Kafka delivery order.

`generate_history(seed, ...)` returns the list of event dicts in the order they are
produced to Kafka. The order is realistic rather than clean:

* mostly time order, with local shuffles of up to a few hours;
* ~3% of events delivered 1-5 days late;
* ~3% of customers whose first activity is delivered after a later one
  (late first events move the customer to an earlier cohort);
* ~2% exact duplicates, re-sent within the next <= 5 events of the same customer
  (re-sends at any distance are covered by the re-feed tests).

Customer behaviour: installs spread over every day, decaying return probability,
churners, lapsers who come back after a gap > 30 days (so they resurrect), uninstalls
(some reinstall), purchases with 2-decimal amounts (~3% with 4 decimals), repeat buyers
and big-spending "whales" (so every RFM segment is populated), full and partial refunds
(a few without an amount), subscriptions on several plans with 30-day renewals, plan
changes, cancels and re-subscriptions, and NPS answers with scores spread over 0-10.
`ts` is a mix of RFC 3339 strings with various UTC offsets and epoch-ms integers.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

PLATFORMS = ("ios", "android", "web")
CHANNELS = ("organic", "paid", "referral", "email")
OFFSETS = (
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-9, minutes=-30)),
)
# Customer ids that exercise key handling: hash-tag braces, colons, spaces, non-ASCII.
ODD_IDS = ("user:{7}", "a b", "ü-ñ-42", "{s:3}", "x" * 128, "c:" * 20)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def format_ts(ts_ms: int, rng: random.Random) -> str | int:
    """Half epoch ms, half RFC 3339 with a random offset (same instant either way)."""
    if rng.random() < 0.5:
        return ts_ms
    tz = rng.choice(OFFSETS)
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)
    dt = dt.astimezone(tz)
    if ts_ms % 1000 == 0 and rng.random() < 0.5:
        text = dt.isoformat(timespec="seconds")
    else:
        text = dt.isoformat(timespec="milliseconds")
    if tz is UTC and rng.random() < 0.5:
        text = text.replace("+00:00", "Z")
    return text


class _Customer:
    def __init__(self, cid: str, rng: random.Random) -> None:
        self.cid = cid
        self.platform = rng.choice(PLATFORMS)
        self.channel = rng.choice(CHANNELS)
        self.events: list[tuple[int, str, dict[str, Any]]] = []  # (ts_ms, type, extra)


def generate_history(
    seed: int,
    customers: int = 2000,
    days: int = 60,
    start: date = date(2026, 3, 2),
    tz: str = "UTC",
    very_late: float = 0.0,
) -> list[dict[str, Any]]:
    """Event dicts in delivery order (duplicates included).

    `very_late` is an extra fraction of events delivered 10-45 days late (beyond the
    churn window), off by default.
    """
    rng = random.Random(seed)
    zone = ZoneInfo(tz)

    def at(day: int, lo_h: float = 0.0, hi_h: float = 24.0) -> int:
        """A random instant on local day `day` (0 = start), between lo_h and hi_h local hours."""
        d = start + timedelta(days=day)
        seconds = int(rng.uniform(lo_h * 3600, hi_h * 3600 - 1))
        local = datetime(d.year, d.month, d.day, tzinfo=zone) + timedelta(seconds=seconds)
        # Wall-clock arithmetic; re-normalise through UTC so DST days stay on their date.
        ms = _ms(local) + rng.randrange(1000)
        # Clamp into the local day (DST days are 23 or 25 hours long).
        day_start = _ms(datetime(d.year, d.month, d.day, tzinfo=zone))
        nd = d + timedelta(days=1)
        day_end = _ms(datetime(nd.year, nd.month, nd.day, tzinfo=zone)) - 1
        return min(max(ms, day_start), day_end)

    custs: list[_Customer] = []
    for i in range(customers):
        cid = ODD_IDS[i] if i < len(ODD_IDS) else f"c{seed}-{i:05d}"
        c = _Customer(cid, rng)
        custs.append(c)
        _simulate(c, rng, days, at)

    # Unique events with ids.
    unique: list[dict[str, Any]] = []
    for c in custs:
        for ts_ms, kind, extra in c.events:
            ev: dict[str, Any] = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer_id": c.cid,
                "type": kind,
                "ts": format_ts(ts_ms, rng),
                "platform": c.platform,
                "channel": c.channel,
            }
            ev.update(extra)
            ev["_ts_ms"] = ts_ms
            unique.append(ev)

    # Delivery keys: time + local jitter; some late; some late first events.
    first_activity: dict[str, int] = {}
    for ev in unique:
        if ev["type"] in ("install", "app_open", "session", "purchase"):
            cur = first_activity.get(ev["customer_id"])
            if cur is None or ev["_ts_ms"] < cur:
                first_activity[ev["customer_id"]] = ev["_ts_ms"]
    # For ~3% of customers with a later activity day, deliver the first activity only
    # after an event of that later day (a late first event moves the customer's cohort).
    next_day_ts: dict[str, int] = {}
    for ev in unique:
        cid, t = ev["customer_id"], ev["_ts_ms"]
        if (
            ev["type"] in ("install", "app_open", "session", "purchase")
            and t - first_activity[cid] > DAY_MS
        ):
            next_day_ts[cid] = min(t, next_day_ts.get(cid, t))
    late_first = {c.cid for c in custs if c.cid in next_day_ts and rng.random() < 0.035}
    keyed: list[tuple[float, int, dict[str, Any]]] = []
    for n, ev in enumerate(unique):
        key = ev["_ts_ms"] + rng.uniform(0, 3 * HOUR_MS)
        if rng.random() < 0.03:
            key += rng.uniform(1, 5) * DAY_MS
        elif very_late and rng.random() < very_late:
            key += rng.uniform(10, 45) * DAY_MS
        if ev["customer_id"] in late_first and ev["_ts_ms"] < next_day_ts[ev["customer_id"]]:
            # Deliver the whole first activity day after the customer's next activity day.
            key = next_day_ts[ev["customer_id"]] + rng.uniform(3 * HOUR_MS, 2 * DAY_MS)
        keyed.append((key, n, ev))
    keyed.sort(key=lambda t: (t[0], t[1]))
    order = [ev for _, _, ev in keyed]

    # Exact duplicates, re-sent within the next <= 5 events of the same customer.
    positions: dict[str, list[int]] = defaultdict(list)
    for pos, ev in enumerate(order):
        positions[ev["customer_id"]].append(pos)
    inserts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    purchase_dups = 0
    for plist in positions.values():
        for k, pos in enumerate(plist):
            p = 0.02
            if order[pos]["type"] == "purchase" and purchase_dups < 40:
                p = 0.06
            if rng.random() < p:
                ahead = rng.randint(0, min(4, len(plist) - 1 - k))
                inserts[plist[k + ahead]].append(order[pos])
                purchase_dups += order[pos]["type"] == "purchase"
    delivered: list[dict[str, Any]] = []
    for pos, ev in enumerate(order):
        delivered.append(_public(ev))
        for dup in inserts.get(pos, ()):
            delivered.append(_public(dup))
    return delivered


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if not k.startswith("_")}


def _price(rng: random.Random, whale: bool) -> float:
    """A purchase amount: 2 decimals, bigger for whales; ~3% priced as quantity x unit
    price less a discount, with 4 decimals (rounded to thousandths by the tracker)."""
    if rng.random() < 0.03:
        while True:
            amount = round(rng.randint(1, 4) * rng.uniform(1, 60) * (1 - rng.uniform(0, 0.3)), 4)
            if abs(amount * 1000 % 1 - 0.5) > 1e-6:  # keep clear of rounding ties
                return amount
    if whale:
        return round(rng.uniform(40.0, 400.0), 2)
    return round(rng.uniform(0.99, 149.99), 2)


PLANS = (4.99, 9.99, 9.99, 19.99)


def _simulate(c: _Customer, rng: random.Random, days: int, at: Callable[..., int]) -> None:
    """Fill c.events with (ts_ms, type, extra) for one customer's life."""
    r = rng.random()
    if r < 0.07 and days >= 45:
        kind = "lapser"
        install = rng.randrange(0, days - 40)
    else:
        kind = (
            "one_and_done"
            if r < 0.20
            else "uninstaller"
            if r < 0.27
            else "subscriber"
            if r < 0.37
            else "regular"
        )
        install = rng.randrange(0, days)
    # Whales buy on most active days and spend more (VIP, pre-VIP and, once they lapse,
    # at-risk RFM segments).
    whale = kind == "regular" and rng.random() < 0.08
    engagement = rng.uniform(0.5, 0.9) if whale else rng.uniform(0.15, 0.8)
    tau = rng.uniform(4, 25)
    lifetime = int(rng.expovariate(1 / 25)) + 1  # churners stop after this many days
    skip_install = rng.random() < 0.05  # first event is not an install

    def activity_day(day: int, first: bool = False) -> None:
        n = rng.choice((1, 1, 2, 3))
        times = sorted(at(day) for _ in range(n + 1))
        if first and not skip_install:
            c.events.append((times[0], "install", {}))  # the install opens the first day
        for ts in times[1:]:
            c.events.append((ts, rng.choice(("app_open", "session", "session")), {}))
        if rng.random() < (0.6 if whale else 0.12):
            amount = _price(rng, whale)
            ts = at(day)
            c.events.append((ts, "purchase", {"amount": amount, "currency": "EUR"}))
            if rng.random() < 0.08 and day + 1 < days:
                # Full or partial refund the next day; a few carry no amount.
                back = amount if rng.random() < 0.6 else round(amount * rng.uniform(0.1, 0.9), 2)
                extra = {"amount": back, "currency": "EUR"} if rng.random() < 0.95 else {}
                c.events.append((at(day + 1), "refund", extra))

    activity_day(install, first=True)
    if kind == "one_and_done":
        active_days = []
    elif kind == "lapser":
        active_days = [
            d for d in range(install + 1, install + rng.randint(2, 8)) if rng.random() < 0.6
        ]
        last = max([install, *active_days])
        back = last + rng.randint(31, 38)
        active_days += [
            d for d in range(back, min(days, back + 10)) if d == back or rng.random() < 0.4
        ]
    else:
        active_days = []
        for d in range(install + 1, min(days, install + lifetime)):
            k = d - install
            if rng.random() < engagement * math.exp(-k / tau) + 0.02:
                active_days.append(d)
    active_days = [d for d in active_days if d < days]
    for d in active_days:
        activity_day(d)

    last = max([install, *active_days])
    if kind == "uninstaller":
        u = last + rng.choice((0, 0, 1, 2, 5))
        if u < days:
            c.events.append((at(u), "uninstall", {}))
            if rng.random() < 0.35:
                back = u + rng.randint(1, 20)
                if back < days:
                    c.events.append((at(back), "install", {}))
                    for d in range(back, min(days, back + 6)):
                        if rng.random() < 0.4:
                            activity_day(d)
    if kind == "subscriber":
        _subscribe(c, rng, days, at, install + rng.randint(0, 3))
    # NPS answers, scores spread over 0-10, some customers answering twice.
    if rng.random() < 0.15:
        for _ in range(rng.choice((1, 1, 1, 2))):
            d = rng.randrange(install, days)
            c.events.append((at(d), "nps", {"score": rng.randint(0, 10)}))
    # A few events just around local midnight, to catch day-cutting mistakes.
    if rng.random() < 0.05:
        d = rng.randrange(install, days)
        c.events.append((at(d, 23.9, 24.0), "session", {}))
        if d + 1 < days:
            c.events.append((at(d + 1, 0.0, 0.1), "app_open", {}))


def _subscribe(
    c: _Customer, rng: random.Random, days: int, at: Callable[..., int], day: int
) -> None:
    """Subscriptions from `day`: renewals every 30 days (sometimes on another plan),
    cancels, and re-subscriptions after a cancel (now and then on the cancel day)."""
    plan = rng.choice(PLANS)
    while day < days:
        extra = {"amount": plan, "currency": "EUR"} if rng.random() < 0.97 else {}
        c.events.append((at(day), "subscription_start", extra))
        cancel = day + rng.randint(1, 70) if rng.random() < 0.45 else None
        renew = day + 30
        while renew < days and (cancel is None or renew < cancel):
            if rng.random() < 0.15:
                plan = rng.choice(PLANS)  # up- or downgrade at renewal
            c.events.append((at(renew), "subscription_renew", {"amount": plan, "currency": "EUR"}))
            renew += 30
        if cancel is None or cancel >= days:
            return
        c.events.append((at(cancel), "subscription_cancel", {}))
        if rng.random() >= 0.4:
            return
        day = cancel + rng.choice((0, 1, 3, 7, 14, 20))  # re-subscribe
        plan = rng.choice(PLANS)


def unique_events(delivered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history without re-sent duplicates (first delivery of each event_id), in order."""
    seen: dict[str, dict[str, Any]] = {}
    for ev in delivered:
        seen.setdefault(ev["event_id"], ev)
    return list(seen.values())
