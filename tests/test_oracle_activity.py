"""Hand-checked unit tests of the oracle's activity metrics (no servers needed): unbounded
retention, lifecycle, installs and stickiness on the toy history E.

Every expected number below was worked out by hand from docs/definitions.md; the
arithmetic is in the comments. Events are at 12:00 UTC unless a time is given.
"""

from __future__ import annotations

from tests.oracle import LIFECYCLE_STATES, Key, OracleSettings, compute, key
from tests.test_oracle import E
from tests.toy_events import closing, ev, pick

# --- unbounded retention, lifecycle, installs, stickiness on the toy history E ----------
#   A: install 03-02, app_open 03-03, app_open 03-10, purchase 04-01 (9.99)
#   B: app_open 03-09, uninstall 03-09, install 03-20, nps 04-07 (score 9)
#   C: install 02-28 (late), session 03-05, session 04-06
# T = 04-07 (a Tuesday) is running; gauges are evaluated at the end of C = 04-06 (a
# Monday), so week 04-06 and April are period(C) and still running.


def test_toy_unbounded_retention() -> None:
    got = compute(E)
    exp: dict[Key, float] = {}

    def cells(kind: str, cohort: str, size: int, retained: list[int]) -> None:
        for off, r in enumerate(retained):
            lab = {"cohort_period": kind, "cohort": cohort, "offset": str(off)}
            exp[key("retention_cohort_unbounded_retained", **lab)] = r
            exp[key("retention_cohort_unbounded_ratio", **lab)] = r / size

    # C's weeks are 02-23, 03-02, 04-06: active in that week or later for offsets 0..6.
    cells("week", "2026-02-23", 1, [1, 1, 1, 1, 1, 1, 1])
    # A (03-02): last active 04-01 (week 03-30 = offset 4), nothing in week 04-06.
    cells("week", "2026-03-02", 1, [1, 1, 1, 1, 1, 0])
    # B (03-09): active 03-09 and 03-20 (week 03-16 = offset 1).
    cells("week", "2026-03-09", 1, [1, 1, 0, 0, 0])
    cells("month", "2026-02", 1, [1, 1, 1])  # C: Feb, Mar, Apr
    cells("month", "2026-03", 2, [2, 1])  # A and B in March, A (04-01) in April
    assert (
        pick(got, "retention_cohort_unbounded_retained", "retention_cohort_unbounded_ratio") == exp
    )


def test_toy_lifecycle_and_installs() -> None:
    got = compute(E)
    exp: dict[Key, float] = {}

    def period(kind: str, start: str, active: int, installs: int, **states: int) -> None:
        lab = {"period": kind, "start": start}
        exp[key("retention_period_active_customers", **lab)] = active
        exp[key("retention_period_installs", **lab)] = installs
        for state in LIFECYCLE_STATES:
            exp[key("retention_lifecycle_customers", state=state, **lab)] = states.get(state, 0)

    def churn(kind: str, start: str, ratio: float) -> None:
        exp[key("retention_lifecycle_churn_ratio", period=kind, start=start)] = ratio

    def running(kind: str, start: str) -> None:
        exp[key("retention_period_running", period=kind, start=start)] = 1

    # Days 03-26 .. 04-06 (K = 12, all complete): A is active on 04-01 only, C on 04-06
    # only; no installs.
    for d in range(26, 32):
        period("day", f"2026-03-{d}", 0, 0)
    for d in range(1, 7):
        period("day", f"2026-04-0{d}", 0, 0)
    period("day", "2026-04-01", 1, 0, resurrecting=1)  # A, first seen 03-02
    period("day", "2026-04-02", 0, 0, dormant=1)
    churn("day", "2026-04-02", 1.0)  # 1 dormant / 1 active on 04-01
    period("day", "2026-04-06", 1, 0, resurrecting=1)  # C; no ratio, nobody on 04-05

    # Weeks 01-19 .. 04-06. Active: 02-23 {C}, 03-02 {A, C}, 03-09 {A, B}, 03-16 {B},
    # 03-23 {}, 03-30 {A}, 04-06 {C}. Installs: C 02-28, A 03-02, B 03-20.
    for start in ("2026-01-19", "2026-01-26", "2026-02-02", "2026-02-09", "2026-02-16"):
        period("week", start, 0, 0)
    period("week", "2026-02-23", 1, 1, new=1)
    period("week", "2026-03-02", 2, 1, new=1, returning=1)  # A new, C returning
    churn("week", "2026-03-02", 0.0)  # 0 / |{C}|
    period("week", "2026-03-09", 2, 0, new=1, returning=1, dormant=1)  # B new, A, C gone
    churn("week", "2026-03-09", 0.5)  # 1 / |{A, C}|
    period("week", "2026-03-16", 1, 1, returning=1, dormant=1)  # B stays, A gone
    churn("week", "2026-03-16", 0.5)
    period("week", "2026-03-23", 0, 0, dormant=1)
    churn("week", "2026-03-23", 1.0)
    period("week", "2026-03-30", 1, 0, resurrecting=1)  # A; no ratio, nobody in 03-23
    # Running at C: its counts so far, no churn ratio (it would read 1.0 here).
    period("week", "2026-04-06", 1, 0, resurrecting=1, dormant=1)  # C back, A gone
    running("week", "2026-04-06")

    # Months 2025-05 .. 2026-04. Feb {C}, Mar {A, B, C}, Apr {A, C}.
    for m in range(5, 13):
        period("month", f"2025-{m:02d}", 0, 0)
    period("month", "2026-01", 0, 0)
    period("month", "2026-02", 1, 1, new=1)
    period("month", "2026-03", 3, 2, new=2, returning=1)
    churn("month", "2026-03", 0.0)
    period("month", "2026-04", 2, 0, returning=2, dormant=1)  # B is dormant so far
    running("month", "2026-04")

    names = (
        "retention_period_active_customers",
        "retention_period_installs",
        "retention_lifecycle_customers",
        "retention_lifecycle_churn_ratio",
        "retention_period_running",
    )
    assert pick(got, *names) == exp


def test_toy_stickiness_and_reinstalls() -> None:
    got = compute(E)
    # On C = 04-06: 1d {C}, 30d {A, B, C}. Nobody is active on the running T = 04-07.
    assert got[key("retention_stickiness_ratio")] == 1 / 3
    assert got[key("retention_active_customers_so_far", window="1d")] == 0
    # Activity on T is live only: stickiness stays that of the complete day.
    with_c = compute([*E, ev("x1", "C", "session", "2026-04-07", "13:00:00")])
    assert with_c[key("retention_stickiness_ratio")] == 1 / 3
    assert with_c[key("retention_active_customers_so_far", window="1d")] == 1
    # Every unique install event counts, a reinstall too; a duplicate does not.
    events = [
        ev("i1", "r", "install", "2026-03-02"),
        ev("i2", "r", "install", "2026-03-04"),
        ev("i2", "r", "install", "2026-03-04"),
        ev("i3", "s", "install", "2026-03-09"),
        closing("2026-03-09"),  # so that week 03-09 is period(C)
    ]
    got = compute(events)
    week = {"period": "week"}
    assert got[key("retention_period_installs", start="2026-03-02", **week)] == 2
    assert got[key("retention_period_installs", start="2026-03-09", **week)] == 1
    assert got[key("retention_period_active_customers", start="2026-03-02", **week)] == 1
    # 30d active is nonzero as soon as anyone is active; no 30d activity -> absent.
    only_nps = [ev("n", "z", "nps", "2026-03-02", score=3)]
    assert key("retention_stickiness_ratio") not in compute(only_nps)


def test_toy_unbounded_counts_activity_after_t() -> None:
    # With 2 days of lateness T is 03-07 and C 03-06 (Friday); a session on 03-09 (next
    # week) lies beyond period(C) and still counts as "that period or any later one".
    events = [
        ev("a", "u", "install", "2026-03-02"),
        ev("b", "u", "session", "2026-03-09"),
        ev("c", "v", "install", "2026-03-08"),
    ]
    got = compute(events, OracleSettings(allowed_lateness_seconds=2 * 86400))
    cell = {"cohort_period": "week", "cohort": "2026-03-02"}
    assert got[key("retention_cohort_retained", offset="0", **cell)] == 2
    assert got[key("retention_cohort_unbounded_retained", offset="0", **cell)] == 2
    assert key("retention_cohort_unbounded_retained", offset="1", **cell) not in got
