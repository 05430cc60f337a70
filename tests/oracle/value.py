"""Value: purchases and revenue, repeat purchases per period, customer lifetime value, and
subscriptions (churn over the last complete period, subscribers and MRR now). Money is
summed in thousandths."""

from __future__ import annotations

from datetime import date, timedelta

from tests.oracle.basics import Key, key
from tests.oracle.ledger import Ledger
from tests.oracle.periods import (
    label,
    last_complete,
    next_period,
    prev_period,
    recent_periods,
)


def all_amounts(by_customer: dict[str, list[int]]) -> list[int]:
    return [a for amounts in by_customer.values() for a in amounts]


def purchases(book: Ledger) -> dict[Key, float]:
    all_purchases, all_refunds = all_amounts(book.purchases), all_amounts(book.refunds)
    revenue, refunded = sum(all_purchases), sum(all_refunds)
    purchasing = [c for c, amounts in book.purchases.items() if len(amounts) >= 1]
    repeat = [c for c, amounts in book.purchases.items() if len(amounts) >= 2]
    out: dict[Key, float] = {
        key("retention_purchases_total"): len(all_purchases),
        key("retention_revenue_total"): revenue / 1000,
        key("retention_refunds_total"): len(all_refunds),
        key("retention_refunded_revenue_total"): refunded / 1000,
        key("retention_net_revenue"): (revenue - refunded) / 1000,
        key("retention_purchasing_customers"): len(purchasing),
        key("retention_repeat_customers"): len(repeat),
    }
    if purchasing:
        out[key("retention_repeat_purchase_ratio")] = len(repeat) / len(purchasing)
        out[key("retention_purchase_frequency")] = len(all_purchases) / len(purchasing)
    if all_purchases:
        # Average order value as shops report it: gross revenue per order.
        out[key("retention_average_order_value")] = revenue / 1000 / len(all_purchases)
    return out


def period_repeat(book: Ledger, C: date, kind: str) -> dict[Key, float]:
    """Repeat purchase rate of the latest period complete at the end of C: of the
    customers with a purchase dated in it, the share with two or more dated in it."""
    start, end = last_complete(C, kind, book.s)
    counts = [sum(1 for d in days if start <= d <= end) for days in book.purchase_days.values()]
    buyers = sum(1 for n in counts if n >= 1)
    repeat = sum(1 for n in counts if n >= 2)
    out: dict[Key, float] = {
        key("retention_period_purchasing_customers", period=kind): buyers,
        key("retention_period_repeat_customers", period=kind): repeat,
    }
    if buyers:
        out[key("retention_period_repeat_purchase_ratio", period=kind)] = repeat / buyers
    return out


def month_churn(book: Ledger, month: date) -> tuple[int, int]:
    """(lost, base at start) of one calendar month: the customers in the base at the end
    of the day before its first day, and those of them not in the base at its last day."""
    last = next_period(month, "month") - timedelta(days=1)
    before = month - timedelta(days=1)
    at_start = {c for c in book.tracked if book.in_base(c, before)}
    lost = {c for c in at_start if not book.in_base(c, last)}
    return len(lost), len(at_start)


def lifespan_years(book: Ledger, C: date) -> float | None:
    """Expected lifespan 1 / (12 x monthly churn), the churn pooled over the latest three
    months complete at the end of C (lost summed over bases summed); capped, and the cap
    when nobody was lost; None when none of the three months had a base at its start."""
    months = [last_complete(C, "month", book.s)[0]]
    while len(months) < 3:
        months.append(prev_period(months[-1], "month", book.s.week_start))
    lost = start = 0
    for month in months:
        month_lost, month_start = month_churn(book, month)
        lost, start = lost + month_lost, start + month_start
    if start == 0:
        return None
    cap = book.s.clv_max_lifespan_years
    if lost == 0:
        return cap
    return min(cap, 1 / (12 * (lost / start)))


def life_days(book: Ledger, c: str, C: date) -> int:
    """Days of c's active life up to the end of C: the days d <= C at whose end c is in
    the base, and c's first active day (if <= C) even when they churned on it."""
    first = book.first[c]
    n = 0
    d = first
    while d <= C:
        if d == first or book.in_base(c, d):
            n += 1
        d += timedelta(days=1)
    return n


def clv(book: Ledger, C: date) -> dict[Key, float]:
    """Purchases per customer-year of active life, the lifespan and CLV (net value per
    purchase x purchases per year x lifespan), over everyone and per recent month cohort."""
    lifespan = lifespan_years(book, C)
    out: dict[Key, float] = {}
    if lifespan is not None:
        out[key("retention_clv_lifespan_seconds")] = lifespan * 365 * 86400
    life = {c: life_days(book, c, C) for c in book.tracked}

    def value(cohort: str, n_purchases: int, net_milli: int, members: list[str]) -> None:
        customer_days = sum(life[c] for c in members)
        if customer_days <= 0:
            return
        per_year = n_purchases * 365 / customer_days
        out[key("retention_purchases_per_customer_year", cohort=cohort)] = per_year
        if n_purchases == 0 or lifespan is None:
            return
        value_per_purchase = net_milli / 1000 / n_purchases  # refunds are not value
        if value_per_purchase > 0:
            out[key("retention_clv", cohort=cohort)] = value_per_purchase * per_year * lifespan

    all_purchases = all_amounts(book.purchases)
    net = sum(all_purchases) - sum(all_amounts(book.refunds))
    value("all", len(all_purchases), net, sorted(book.tracked))
    for month in recent_periods(C, "month", book.s):
        members = sorted(c for c in book.tracked if book.first[c].replace(day=1) == month)
        if not members:
            continue
        value(
            label(month, "month"),
            sum(len(book.purchases.get(c, [])) for c in members),
            sum(sum(book.purchases.get(c, [])) - sum(book.refunds.get(c, [])) for c in members),
            members,
        )
    return out


def subscription_churn(book: Ledger, C: date, kind: str) -> dict[Key, float]:
    """Subscriber churn of the last complete period (ChartMogul's subscriber churn rate):
    of those subscribed at the end of the day before it, the share not subscribed at its
    end; cancel events in it are counted beside."""
    start, end = last_complete(C, kind, book.s)
    before = start - timedelta(days=1)
    cancels = sum(1 for d in book.cancel_days if start <= d <= end)
    at_start = {c for c in book.subs if book.subscribed(c, before)}
    lost = {c for c in at_start if not book.subscribed(c, end)}
    out: dict[Key, float] = {
        key("retention_subscription_cancels", period=kind): cancels,
        key("retention_subscribers_start", period=kind): len(at_start),
        key("retention_subscribers_lost", period=kind): len(lost),
    }
    if at_start:
        out[key("retention_subscription_churn_ratio", period=kind)] = len(lost) / len(at_start)
    return out


def monthly_amount(book: Ledger, c: str) -> float:
    """The customer's plan price per month, in thousandths: the amount of their latest
    start or renew that carried one (by ts, a tie to the larger event_id), / 12 when that
    event was annual; 0 when none carried an amount."""
    priced = [e for e in book.subs[c] if e.kind in book.s.subscribe_types and e.milli is not None]
    if not priced:
        return 0
    latest = max(priced, key=lambda e: (e.ms, e.event_id))
    assert latest.milli is not None
    return latest.milli / 12 if latest.annual else latest.milli


def subscribers(book: Ledger, C: date) -> dict[Key, float]:
    """Live subscriptions at the end of the evaluation day C and their MRR (ChartMogul's
    MRR: each plan normalised to a month); the amounts come from all events received."""
    live = [c for c in book.subs if book.subscribed(c, C)]
    mrr = sum(monthly_amount(book, c) for c in live)
    return {key("retention_subscribers"): len(live), key("retention_mrr"): mrr / 1000}
