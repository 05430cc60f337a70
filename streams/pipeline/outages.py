"""Outages of Redis and Kafka hold the worker at its position instead of stopping it.

A failed backend operation is retried with doubling waits, and the health metrics say
which backend is down; errors that are not an outage of the backend are bugs and surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from core.redis_client import REDIS_ERRORS, is_outage
from streams.health import WorkerHealth

log = logging.getLogger(__name__)
FIRST_BACKOFF, MAX_BACKOFF = 0.2, 30.0  # seconds between retries of a failed backend
KAFKA_PROBE_SECONDS = 2.0  # how often the health metrics check that the broker answers
# what each backend raises for an outage; everything else is a bug and surfaces
BACKEND_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "redis": (*REDIS_ERRORS, OSError),
    "kafka": (KafkaError, OSError, asyncio.TimeoutError),
    "dead_letter": (KafkaError, OSError, asyncio.TimeoutError),
}
T = TypeVar("T")


class Retrying:
    """Runs backend operations until they succeed, reporting each backend's state."""

    def __init__(self, health: WorkerHealth) -> None:
        self.health = health
        self.woken = asyncio.Event()  # set to end every current backoff wait at once

    def wake(self) -> None:
        """Retry every failed operation now instead of after its backoff: a rebalance
        wants each waiting operation to look again at whether it is still wanted."""
        self.woken.set()
        self.woken = asyncio.Event()

    async def __call__(self, backend: str, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run op until it succeeds, waiting longer after each failure: an outage holds
        the worker at its position instead of stopping it."""
        delay = FIRST_BACKOFF
        while True:
            try:
                result = await op()
            except BACKEND_ERRORS[backend] as exc:
                if not is_outage(exc):
                    raise
                self.health.backend_failed(backend)
                log.warning(
                    "%s failed (%s: %s); retrying in %.1f s, position kept",
                    what,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await self._backoff(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if delay > FIRST_BACKOFF:
                log.info("%s succeeded again", what)
            self.health.backend_ok(backend)
            return result

    async def _backoff(self, seconds: float) -> None:
        """Wait before the next attempt, or until wake() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), seconds)


async def watch_kafka(consumer: AIOKafkaConsumer, health: WorkerHealth) -> None:
    """Tell the health metrics whether the broker answers. The consuming loop cannot:
    during an outage aiokafka retries fetches and commits inside its own calls, so
    the loop just waits; a metadata round trip every few seconds tells."""
    kafka_up = True  # as the last probe of the broker found it
    while True:
        await asyncio.sleep(KAFKA_PROBE_SECONDS)
        try:
            fetch = consumer._client.fetch_all_metadata()
            await asyncio.wait_for(fetch, KAFKA_PROBE_SECONDS)
        except (TimeoutError, KafkaError) as exc:
            if kafka_up:
                log.warning("Kafka unreachable (%s); the worker waits at its position", exc)
            kafka_up = False
            health.backend_failed("kafka")
            continue
        if not kafka_up:
            log.info("Kafka answers again")
        kafka_up = True
        health.backend_ok("kafka")
