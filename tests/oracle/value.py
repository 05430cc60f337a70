"""Value: purchases and revenue, customer lifetime value, and subscriptions (churn over
the last complete period, subscribers and MRR now). Money is summed in thousandths."""

from __future__ import annotations

from datetime import date, timedelta

from tests.oracle.activity import BaseChange
from tests.oracle.basics import Key, OracleSettings, key
from tests.oracle.ledger import Ledger
from tests.oracle.periods import label, last_complete, recent_periods


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
        out[key("retention_average_order_value")] = (revenue - refunded) / 1000 / len(all_purchases)
    return out


def lifespan_years(month: BaseChange, s: OracleSettings) -> float:
    """The expected lifespan: 1 / (12 x last month's churn), capped (the cap without churn)."""
    if month.at_start and month.lost:
        return min(s.clv_max_lifespan_years, 1 / (12 * (len(month.lost) / len(month.at_start))))
    return s.clv_max_lifespan_years


def clv(book: Ledger, C: date, lifespan: float) -> dict[Key, float]:
    """Purchases per customer-year and CLV, over everyone and per recent monthly cohort."""
    out: dict[Key, float] = {key("retention_clv_lifespan_seconds"): lifespan * 365 * 86400}

    def value(cohort: str, n_purchases: int, net_milli: int, members: list[str]) -> None:
        customer_days = sum((C - book.first[c]).days + 1 for c in members)
        if customer_days <= 0:
            return
        per_year = n_purchases * 365 / customer_days
        out[key("retention_purchases_per_customer_year", cohort=cohort)] = per_year
        if n_purchases == 0:
            return
        aov = net_milli / 1000 / n_purchases
        if aov > 0:
            out[key("retention_clv", cohort=cohort)] = aov * per_year * lifespan

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
