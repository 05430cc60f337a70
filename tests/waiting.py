"""Waiting for something to happen: poll a condition until it holds or a deadline passes.

Tests never sleep a fixed time and hope; they name what they wait for, so a slow machine
only makes them slower and a broken one fails with that name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """The condition did not hold before the deadline."""


def wait_until(
    check: Callable[[], T],
    what: str | Callable[[], str],
    *,
    timeout: float,
    interval: float = 0.2,
) -> T:
    """Call `check` until it returns something truthy, and return that; raise WaitTimedOut
    naming `what` (a text, or a function that describes the last state) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f}s waiting for {_say(what)}")
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], Awaitable[T]],
    what: str | Callable[[], str],
    *,
    timeout: float,
    interval: float = 0.2,
) -> T:
    """`wait_until` for a coroutine check, inside a running event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f}s waiting for {_say(what)}")
        await asyncio.sleep(interval)


def _say(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()
