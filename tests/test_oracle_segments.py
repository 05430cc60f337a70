"""Hand-checked unit tests of the oracle's customer groups (no servers needed): NPS, quick
and late churn, win-back, RFM, breakdowns by platform and channel.

Every expected number below was worked out by hand from docs/definitions.md; the
arithmetic is in the comments. Events are at 12:00 UTC unless a time is given.
"""

from __future__ import annotations

import pytest

from tests.history import generate_history
from tests.oracle import RFM_SEGMENTS, OracleSettings, compute, key
from tests.toy_events import Event, closing, ev, pick

# --- NPS ----------------------------------------------------------------------------------
# C = 04-30 (the closing event makes 05-01 the running day T); the 30-day window is
# 04-01..04-30.

NPS = [
    ev("n1", "a", "nps", "2026-04-30", score=10),
    ev("n2", "b", "nps", "2026-04-01", "00:00:00", score=9),  # first day of the window
    ev("n3", "c", "nps", "2026-04-15", score=8),
    ev("n4", "d", "nps", "2026-04-15", score=7),
    ev("n5", "e", "nps", "2026-04-20", score=6),
    ev("n6", "f", "nps", "2026-04-02", score=0),
    ev("n7", "g", "nps", "2026-04-03", score=5),
    ev("n7", "g", "nps", "2026-04-03", score=5),  # duplicate
    ev("n8", "h", "nps", "2026-03-31", "23:59:59", score=3),  # outside the window
    ev("n9", "i", "nps", "2026-03-31", score=10),  # outside
    ev("n10", "j", "nps", "2026-04-10"),  # no score: invalid (dead-lettered), ignored
    ev("n11", "a", "nps", "2026-04-29", score=10),  # a's earlier answer: a counts once
    closing("2026-04-30"),
]


def test_nps_counts_respondents() -> None:
    got = compute(NPS)
    # Respondents: promoters a, b; passives c, d; detractors e, f, g.
    assert got[key("retention_nps_responses", group="promoter")] == 2
    assert got[key("retention_nps_responses", group="passive")] == 2
    assert got[key("retention_nps_responses", group="detractor")] == 3
    assert got[key("retention_nps")] == pytest.approx(100 * (2 - 3) / 7)
    without_a2 = compute([e for e in NPS if e["event_id"] != "n11"])
    assert pick(without_a2, "retention_nps", "retention_nps_responses") == pick(
        got, "retention_nps", "retention_nps_responses"
    )
    one_day = compute(NPS, OracleSettings(nps_window_days=1))
    assert one_day[key("retention_nps")] == 100.0  # a's n1 only
    assert one_day[key("retention_nps_responses", group="detractor")] == 0
    # No responses: zero counts, no NPS.
    none = compute([ev("x", "a", "session", "2026-04-30"), closing("2026-04-30")])
    assert key("retention_nps") not in none
    assert none[key("retention_nps_responses", group="promoter")] == 0


def test_nps_issue_example_five_promoters_and_one_repeated_detractor() -> None:
    events = [ev(f"p{n}", f"p{n}", "nps", "2026-04-10", score=10) for n in range(5)]
    events += [ev(f"d{n}", "d", "nps", f"2026-04-{n + 10}", score=3) for n in range(5)]
    got = compute([*events, closing("2026-04-30")])
    assert got[key("retention_nps_responses", group="promoter")] == 5
    assert got[key("retention_nps_responses", group="detractor")] == 1
    assert got[key("retention_nps")] == pytest.approx(100 * 4 / 6)  # +66.7


def test_nps_latest_answer_in_the_window_counts() -> None:
    # C = 04-30 (closing). z changed their mind: 10 on 04-05, then 2 on 04-20 -> detractor.
    # y's 3 of 03-25 is outside the window: their 9 of 04-10 counts -> promoter.
    # w answered twice with the same ts: the larger event id ('w-b', 10) wins -> promoter.
    # v answered 8 at 09:00 and 6 at 10:00 on one day -> detractor.
    events = [
        ev("z1", "z", "nps", "2026-04-05", score=10),
        ev("z2", "z", "nps", "2026-04-20", score=2),
        ev("y1", "y", "nps", "2026-03-25", score=3),
        ev("y2", "y", "nps", "2026-04-10", score=9),
        ev("w-b", "w", "nps", "2026-04-30", "08:00:00", score=10),
        ev("w-a", "w", "nps", "2026-04-30", "08:00:00", score=0),
        ev("v2", "v", "nps", "2026-04-12", "10:00:00", score=6),
        ev("v1", "v", "nps", "2026-04-12", "09:00:00", score=8),
        closing("2026-04-30"),
    ]
    got = compute(events)
    assert pick(got, "retention_nps_responses") == {
        key("retention_nps_responses", group="promoter"): 2,  # y, w
        key("retention_nps_responses", group="passive"): 0,
        key("retention_nps_responses", group="detractor"): 2,  # z, v
    }
    assert got[key("retention_nps")] == 0.0
    # Lateness 10 days: T = 04-21, C = 04-20. w's answers are after C and z's 2 of 04-20
    # counts;
    # with window 10 (04-11..04-20) y's 9 of 04-10 is out, v's 6 of 04-12 counts.
    late = compute(events, OracleSettings(allowed_lateness_seconds=10 * 86400, nps_window_days=10))
    assert late[key("retention_nps_responses", group="promoter")] == 0
    assert late[key("retention_nps_responses", group="detractor")] == 2  # z, v
    # Window 15 from C = 04-20 (04-06..04-20) still excludes z's 10 of 04-05; an answer
    # after C (x's 0 on 04-25) does not displace x's 9 of 04-15.
    more = [*events, ev("x1", "x", "nps", "2026-04-15", score=9)]
    more.append(ev("x2", "x", "nps", "2026-04-25", score=0))
    late15 = compute(more, OracleSettings(allowed_lateness_seconds=10 * 86400, nps_window_days=15))
    assert late15[key("retention_nps_responses", group="promoter")] == 2  # y, x
    assert late15[key("retention_nps_responses", group="detractor")] == 2  # z, v


# --- quick and late churn, win-back -----------------------------------------------------
# C = 04-25 (T = 04-26, the closing event's day), window 30, quick when the tenure
# (first to last activity day on or before the first churn day c) is under 7 days.
#   q1  install 03-01, uninstall 03-07: c 03-07, last activity 03-01: tenure 0, quick
#   q2  install 03-01, session + uninstall 03-08: c 03-08, tenure 7, late; back 04-20
#   q3  install 03-01, then nothing until 04-10: c 03-31, tenure 0, quick; won back
#   q4  install + uninstall 03-01: c 03-01, tenure 0, quick; install 03-02: won back
#   q6  install 03-27: c would be 04-26 > C: not churned
#   q7  install 03-26: c 04-25 = C, tenure 0, quick
#   q8  install 03-01, sessions 03-05, 03-15: c 04-14, tenure 14, late
#   q9  install 03-01, session 03-07: c 04-06, tenure 6, quick
#   q10 install 03-01, session 03-08: c 04-07, tenure 7, late
#   q5  install 04-20, session 04-25

CHURN = [
    ev("q1a", "q1", "install", "2026-03-01"),
    ev("q1b", "q1", "uninstall", "2026-03-07"),
    ev("q2a", "q2", "install", "2026-03-01"),
    ev("q2b", "q2", "session", "2026-03-08", "09:00:00"),
    ev("q2c", "q2", "uninstall", "2026-03-08"),
    ev("q2d", "q2", "session", "2026-04-20"),
    ev("q3a", "q3", "install", "2026-03-01"),
    ev("q3b", "q3", "session", "2026-04-10"),
    ev("q4a", "q4", "install", "2026-03-01", "08:00:00"),
    ev("q4b", "q4", "uninstall", "2026-03-01", "09:00:00"),
    ev("q4c", "q4", "install", "2026-03-02"),
    ev("q6a", "q6", "install", "2026-03-27"),
    ev("q7a", "q7", "install", "2026-03-26"),
    ev("q8a", "q8", "install", "2026-03-01"),
    ev("q8b", "q8", "session", "2026-03-05"),
    ev("q8c", "q8", "session", "2026-03-15"),
    ev("q9a", "q9", "install", "2026-03-01"),
    ev("q9b", "q9", "session", "2026-03-07"),
    ev("q10a", "q10", "install", "2026-03-01"),
    ev("q10b", "q10", "session", "2026-03-08"),
    ev("q5a", "q5", "install", "2026-04-20"),
    ev("q5b", "q5", "session", "2026-04-25"),
    closing("2026-04-25"),
]


def test_quick_and_late_churn() -> None:
    got = compute(CHURN)
    assert got[key("retention_churned_customers", tenure="quick")] == 5  # q1 q3 q4 q7 q9
    assert got[key("retention_winback_customers", tenure="quick")] == 2  # q3, q4
    assert got[key("retention_winback_ratio", tenure="quick")] == 0.4
    assert got[key("retention_churned_customers", tenure="late")] == 3  # q2, q8, q10
    assert got[key("retention_winback_customers", tenure="late")] == 1  # q2
    assert got[key("retention_winback_ratio", tenure="late")] == pytest.approx(1 / 3)
    # quick_churn_days = 8 makes q2 and q10 (tenure 7) quick.
    got8 = compute(CHURN, OracleSettings(quick_churn_days=8))
    assert got8[key("retention_churned_customers", tenure="quick")] == 7
    assert got8[key("retention_churned_customers", tenure="late")] == 1  # q8


def test_installs_that_never_return_are_quick_churners() -> None:
    # Ten installs on 03-01 and nothing more; C = 04-25, so all ten left the base at the
    # end of 03-30 with tenure 0.
    events = [ev(f"i{n}", f"i{n}", "install", "2026-03-01") for n in range(10)]
    events += [ev("q5a", "q5", "install", "2026-04-20"), closing("2026-04-25")]
    got = compute(events)
    assert got[key("retention_churned_customers", tenure="quick")] == 10
    assert got[key("retention_churned_customers", tenure="late")] == 0
    assert got[key("retention_winback_ratio", tenure="quick")] == 0.0


def test_winback_counts_activity_after_t() -> None:
    # Lateness 2 days: T = 04-24 and C = 04-23, so q7 (churn day 04-25) is not churned
    # yet; q8's session on 04-24, after C, still counts as a win-back.
    events = [*CHURN, ev("q8d", "q8", "session", "2026-04-24")]
    got = compute(events, OracleSettings(allowed_lateness_seconds=2 * 86400))
    assert got[key("retention_churned_customers", tenure="quick")] == 4  # q1 q3 q4 q9
    assert got[key("retention_churned_customers", tenure="late")] == 3  # q2, q8, q10
    assert got[key("retention_winback_customers", tenure="late")] == 2  # q2, q8
    no_churn = compute([ev("a", "x", "install", "2026-04-01")])
    assert no_churn[key("retention_churned_customers", tenure="quick")] == 0
    assert key("retention_winback_ratio", tenure="quick") not in no_churn


# --- RFM ----------------------------------------------------------------------------------
# C = 06-30 (V's NPS answer is on it; T = 07-01, the closing event's day). Recency
# r = days since the last purchase; R: r <= 7, 14, 30, 60 -> 5..2, else 1.


def rfm_history() -> list[Event]:
    out: list[Event] = []

    def buy(cid: str, day: str, amount: float) -> None:
        out.append(ev(f"{cid}-{len(out)}", cid, "purchase", day, amount=amount))

    def act(cid: str, day: str, kind: str = "session") -> None:
        out.append(ev(f"{cid}-{len(out)}", cid, kind, day))

    # V: r 10 (R4), 5 purchases (F4), 510 (M4) -> vip
    act("V", "2026-05-01", "install")
    for d, amount in zip((16, 17, 18, 19, 20), (120, 130, 100, 90, 70), strict=True):
        buy("V", f"2026-06-{d}", amount)
    out.append(ev("V-nps", "V", "nps", "2026-06-30", score=10))
    # P: r 20 (R3), 3 purchases (F3), 200 (M3) -> pre_vip
    act("P", "2026-05-01", "install")
    for d, amount in ((8, 100), (9, 60), (10, 40)):
        buy("P", f"2026-06-{d:02d}", amount)
    # Y: r 5 (R5), 2 purchases (F2), 20 (M1) -> loyal
    act("Y", "2026-05-01", "install")
    buy("Y", "2026-06-24", 10)
    buy("Y", "2026-06-25", 10)
    # K: r 119 (R1), 3 purchases (F3) -> at_risk
    for d in (1, 2, 3):
        buy("K", f"2026-03-0{d}", 10)
    # M: r 41 (R2), 1 purchase of 200 (M3) -> at_risk
    act("M", "2026-04-20", "install")
    buy("M", "2026-05-20", 200)
    # Q: like M, but 100 refunded: M2 -> hibernating
    act("Q", "2026-04-20", "install")
    buy("Q", "2026-05-20", 200)
    out.append(ev("Q-refund", "Q", "refund", "2026-05-21", amount=100))
    # X150: r 121, one purchase of exactly 150 (M3) -> at_risk; X149: 149.999 (M2) -> lost
    buy("X150", "2026-03-01", 150)
    buy("X149", "2026-03-01", 149.999)
    # S: in the app yesterday, but the last purchase was 03-02 (r 120, R1) -> lost
    act("S", "2026-03-01", "install")
    buy("S", "2026-03-02", 10)
    act("S", "2026-06-29")
    # B61: r 61 -> lost; B60: r 60 (R2) -> hibernating; H: r 46 (R2) -> hibernating
    act("B61", "2026-04-20", "install")
    buy("B61", "2026-04-30", 10)
    act("B60", "2026-04-20", "install")
    buy("B60", "2026-05-01", 10)
    act("H", "2026-04-01", "install")
    buy("H", "2026-05-15", 10)
    # No purchase: Lo, A (active two days ago), Nb (first seen exactly 14 days before C:
    # not new), Rf (a refund only)
    act("Lo", "2026-03-01", "install")
    act("Lo", "2026-03-10")
    act("A", "2026-05-01", "install")
    act("A", "2026-06-28")
    act("Nb", "2026-06-16", "install")
    act("Rf", "2026-05-01", "install")
    out.append(ev("Rf-refund", "Rf", "refund", "2026-05-02", amount=5))
    # N: first seen 10 days before C -> new, whatever it bought
    act("N", "2026-06-20", "install")
    buy("N", "2026-06-20", 1000)
    buy("N", "2026-06-21", 1000)
    # R7: r 7 (R5), one purchase -> promising; Pr: r 25 (R3), one purchase of 1000 (F1)
    # -> promising
    act("R7", "2026-05-01", "install")
    buy("R7", "2026-06-23", 10)
    act("Pr", "2026-05-01", "install")
    buy("Pr", "2026-06-05", 1000)
    out.append(closing("2026-06-30"))  # first seen after C: in no segment
    return out


def test_rfm_segments() -> None:
    got = compute(rfm_history())
    expected = {
        "vip": 1,  # V
        "pre_vip": 1,  # P
        "loyal": 1,  # Y
        "at_risk": 3,  # K, M, X150
        "lost": 3,  # X149, S, B61
        "hibernating": 3,  # Q, B60, H
        "new": 1,  # N
        "no_purchase": 4,  # Lo, A, Nb, Rf
        "promising": 2,  # R7, Pr
    }
    assert set(expected) == set(RFM_SEGMENTS)
    assert pick(got, "retention_rfm_customers") == {
        key("retention_rfm_customers", segment=s): n for s, n in expected.items()
    }


def test_rfm_recency_follows_the_latest_purchase_whatever_the_order() -> None:
    # S buys again on 06-25 (r 5): 2 purchases (F2) -> loyal. A purchase on 02-01
    # instead, delivered first, adds a purchase (F2) but leaves the recency (r 120): lost.
    history = rfm_history()
    again = compute([*history, ev("S-late", "S", "purchase", "2026-06-25", amount=10)])
    assert again[key("retention_rfm_customers", segment="lost")] == 2  # X149, B61
    assert again[key("retention_rfm_customers", segment="loyal")] == 2  # Y, S
    older = [ev("S-old", "S", "purchase", "2026-02-01", amount=10), *history]
    assert compute(older)[key("retention_rfm_customers", segment="lost")] == 3


def test_rfm_thresholds_are_settings() -> None:
    # New for 20 days: Nb and N are new; recency 3,6,9,12: V (r 10) gets R2 -> at_risk.
    got = compute(rfm_history(), OracleSettings(rfm_new_days=20, rfm_recency_days=(3, 6, 9, 12)))
    assert got[key("retention_rfm_customers", segment="new")] == 2
    assert got[key("retention_rfm_customers", segment="vip")] == 0
    # A customer first seen after C (on the running day T, or later with lateness) is
    # in no segment: here T = 06-02 and C = 06-01.
    late = compute([ev("a", "x", "install", "2026-06-01"), ev("b", "y", "install", "2026-06-02")])
    assert sum(v for k, v in late.items() if k[0] == "retention_rfm_customers") == 1
    late = compute(
        [ev("a", "x", "install", "2026-06-01"), ev("b", "y", "install", "2026-06-03")],
        OracleSettings(allowed_lateness_seconds=86400),
    )
    assert sum(v for k, v in late.items() if k[0] == "retention_rfm_customers") == 1


# --- breakdowns by platform and channel -------------------------------------------------
# T = 03-20 (P's nps), so the evaluation day C is 03-19, a Thursday: the last complete
# week is 03-09..03-15, the last complete month February (no base yet).
#   N  nps 03-02 with web (an nps sets nothing; web is never kept), app_open 03-03 ios -> ios
#   L  install 03-02 without platform, session 03-10 android -> android; then a late
#      install 03-01 with tv: tv is kept (met on an activity), but L stays android
#   O  install 03-05 "other", U install 03-05 "unknown": real values
#   B  install 03-06 "(other)": the (other) bucket; X session 03-19 "(not set)": not set

BREAKDOWNS = [
    ev("n1", "N", "nps", "2026-03-02", score=9, platform="web"),
    ev("n2", "N", "app_open", "2026-03-03", platform="ios"),
    ev("l1", "L", "install", "2026-03-02"),
    ev("l2", "L", "session", "2026-03-10", platform="android"),
    ev("l3", "L", "install", "2026-03-01", platform="tv"),
    ev("o1", "O", "install", "2026-03-05", platform="other"),
    ev("u1", "U", "install", "2026-03-05", platform="unknown"),
    ev("b1", "B", "install", "2026-03-06", platform="(other)"),
    ev("x1", "X", "session", "2026-03-19", platform="(not set)"),
    ev("p1", "P", "nps", "2026-03-20", score=5, platform="web"),
]


def platform_samples(got: dict, name: str, **labels: str) -> dict[str, float]:
    """value -> sample of one breakdown metric, of the platform dimension unless told."""
    wanted = {"dimension": "platform", **labels}.items()
    return {
        dict(k[1])["value"]: v
        for k, v in got.items()
        if k[0] == f"retention_breakdown_{name}" and wanted <= set(k[1])
    }


def test_breakdown_values_come_from_the_first_activity_carrying_them() -> None:
    got = compute(BREAKDOWNS)
    active = platform_samples(got, "active_customers", window="30d")
    assert active == {
        "ios": 1,
        "android": 1,
        "tv": 0,
        "other": 1,
        "unknown": 1,
        "(other)": 1,
        "(not set)": 1,
    }
    # L's cohort is the week of 02-23 (03-01 is a Sunday), under android.
    weeks = platform_samples(got, "cohort_size", cohort_period="week", cohort="2026-02-23")
    assert weeks == {"android": 1}
    # In the base at the end of 03-08 and of 03-15: N, L, O, U, B, one in each value.
    start = platform_samples(got, "base_start_customers", period="week")
    assert start == dict.fromkeys(active, 1) | {"tv": 0, "(not set)": 0}
    assert platform_samples(got, "crr", period="week") == dict.fromkeys(
        ("ios", "android", "other", "unknown", "(other)"), 1.0
    )
    # No channel anywhere: every tracked customer is (not set).
    channels = platform_samples(got, "active_customers", window="30d", dimension="channel")
    assert channels == {"(not set)": 6, "(other)": 0}


def test_breakdown_cap_folds_later_values_into_other() -> None:
    # Cap 2: ios and android are kept; tv, other and unknown come later.
    got = compute(BREAKDOWNS, OracleSettings(dimension_cap=2))
    active = platform_samples(got, "active_customers", window="30d")
    assert active == {"ios": 1, "android": 1, "(other)": 3, "(not set)": 1}


def test_breakdowns_add_up_to_the_totals() -> None:
    got = compute(generate_history(seed=5, customers=150, days=40))
    for dimension in ("platform", "channel"):
        for window in ("1d", "7d", "30d"):
            parts = [
                v
                for k, v in got.items()
                if k[0] == "retention_breakdown_active_customers"
                and ("dimension", dimension) in k[1]
                and ("window", window) in k[1]
            ]
            total = got[key("retention_active_customers", window=window)]
            assert total > 0 and sum(parts) == total


def test_breakdown_kept_values_can_be_given() -> None:
    # From several partitions the values met first are the consumption order's: given
    # tv and other as kept, N (ios), L (android), U and B count under (other).
    kept = {"platform": ["tv", "other"]}
    got = compute(BREAKDOWNS, OracleSettings(dimension_cap=2), kept=kept)
    active = platform_samples(got, "active_customers", window="30d")
    assert active == {"tv": 0, "other": 1, "(other)": 4, "(not set)": 1}
    with pytest.raises(AssertionError, match="over the cap"):
        compute(BREAKDOWNS, OracleSettings(dimension_cap=1), kept=kept)
