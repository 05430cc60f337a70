"""One computation at a time, its result shared by every caller that waited for it.

Prometheus, a second Prometheus, a curl and Grafana's "explore" can all scrape at the
same moment. Each collection reads Redis and builds a few thousand samples; letting
them run side by side only multiplies the load on Redis when it is already slow. Here a
caller arriving while a collection runs waits for that one and gets its result, and a
caller within `max_age` seconds of the last result gets it again without collecting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedResult(Generic[T]):
    """Calls `compute` for at most one caller at a time; the others share its outcome."""

    def __init__(self, compute: Callable[[], T], max_age: float = 0.0) -> None:
        self._compute = compute
        self._max_age = max_age
        self._cond = threading.Condition()
        self._running = False
        self._round = 0  # completed computations, so a waiter knows when its one is done
        self._outcome: tuple[float, T] | BaseException | None = None
        self.computations = 0

    def get(self) -> T:
        with self._cond:
            fresh = self._fresh()
            if fresh is not None:
                return fresh[1]
            if self._running:
                started = self._round
                while self._round == started:
                    self._cond.wait()
                return self._result()
            self._running = True
            self.computations += 1
        outcome: tuple[float, T] | BaseException
        try:
            outcome = (time.monotonic(), self._compute())
        except BaseException as exc:
            outcome = exc
        with self._cond:
            self._outcome = outcome
            self._running = False
            self._round += 1
            self._cond.notify_all()
            return self._result()

    def _fresh(self) -> tuple[float, T] | None:
        outcome = self._outcome
        if isinstance(outcome, tuple) and time.monotonic() - outcome[0] <= self._max_age:
            return outcome
        return None

    def _result(self) -> T:
        """The last outcome: its value, or its exception raised again for this caller."""
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome[1]
