"""The session's own guards, without servers: the leftover check and the wait helper."""

from __future__ import annotations

import itertools

import pytest

from tests.broker import SESSION, BrokerState, default_groups, default_topics, problems
from tests.waiting import WaitTimedOut, wait_until


def state(topics: set[str], groups: set[str] | None = None, **records: int) -> BrokerState:
    return BrokerState(frozenset(topics), frozenset(groups or ()), dict(records))


def test_names_this_session_left_are_reported_and_others_are_not() -> None:
    before = state({"someone-else", "events"}, events=5)
    after = state(
        {"someone-else", "events", "another-run-topic", f"events-t{SESSION}01"},
        {"another-run-group", f"retention-t{SESSION}01-host"},
        events=5,
    )
    assert problems(before, after) == [
        f"1 topics left behind: ['events-t{SESSION}01']",
        f"1 consumer groups left behind: ['retention-t{SESSION}01-host']",
    ]


def test_a_default_topic_created_or_written_to_is_reported() -> None:
    assert default_topics() == ("events", "events.dlq", "customer-lifecycle")
    events, dlq, _ = default_topics()
    group, faust_group = default_groups()
    assert faust_group == f"{group}-host"
    before = state({dlq}, **{dlq: 2})
    after = state({events, dlq}, {faust_group}, **{events: 0, dlq: 3})
    assert problems(before, after) == [
        "the default topic 'events' was created during the session",
        "the default topic 'events.dlq' gained 1 records",
        f"the default consumer group {faust_group!r} was created during the session",
    ]


def test_wait_until_returns_the_first_truthy_value_or_names_what_it_waited_for() -> None:
    calls = itertools.count()
    got = wait_until(lambda: next(calls) >= 2 and "ready", "a third call", timeout=5, interval=0)
    assert got == "ready" and next(calls) == 3
    with pytest.raises(WaitTimedOut, match="waiting for the impossible"):
        wait_until(lambda: False, "the impossible", timeout=0.05, interval=0.01)
