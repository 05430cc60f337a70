"""Send events to Kafka with pacing, confirmed delivery and a progress bar with events/s.

Shared by `feed`, `simulate` and `demo`, so they all pace, count and report
failures the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from core.errors import EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from core.kafka import client_options, explain_failure
from core.settings import Settings
from streams.topics import ALREADY_EXISTS, REFUSAL_CODES, topic_refused

MAX_IN_FLIGHT = 20_000  # unconfirmed sends kept before waiting for the oldest
CONNECT_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send; `ref` comes back to the caller if delivery fails."""

    key: bytes
    value: bytes
    ts_ms: int
    ref: Any = None


@dataclass(slots=True)
class SendStats:
    attempted: int = 0
    confirmed: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.confirmed / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class Pacer:
    """When each event may go: at once, at a fixed rate, as a sped-up replay, or live."""

    rate: float | None = None  # events per second
    replay_speed: float | None = None  # event-time seconds per wall second
    live: bool = False  # send each event when the wall clock reaches its event time
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _t0: float | None = field(default=None, init=False)
    _ts0: int | None = field(default=None, init=False)

    def delay(self, index: int, ts_ms: int) -> float:
        """Seconds to wait before sending the `index`-th event (0-based) with event time ts_ms."""
        if self.live:
            return max(0.0, ts_ms / 1000 - self.wall())
        now = self.clock()
        if self._t0 is None:
            self._t0, self._ts0 = now, ts_ms
        if self.rate:
            return max(0.0, self._t0 + index / self.rate - now)
        if self.replay_speed and self._ts0 is not None:
            target = self._t0 + (ts_ms - self._ts0) / 1000 / self.replay_speed
            return max(0.0, target - now)
        return 0.0


class RateColumn(ProgressColumn):
    """Events per second since the start (confirmations arrive in bursts; the average doesn't)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("… events/s", style="cyan")
        return Text(f"{task.completed / elapsed:,.0f} events/s", style="cyan")


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def quiet_kafka_logs() -> None:
    """aiokafka logs every failed connection attempt; our own message says it once, clearly."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


async def unreachable(settings: Settings, exc: BaseException) -> CommandError:
    """Exit 3 with why: the broker refused us (credentials, certificate), or is not there."""
    failure = await explain_failure(settings, exc)
    hint = (
        ""
        if failure.refused
        else ". Is the stack running? `retention stack up` starts it; "
        "RETENTION_KAFKA_BOOTSTRAP points elsewhere."
    )
    return CommandError(failure.message + hint, EXIT_UNREACHABLE)


async def ensure_topic(settings: Settings, topic: str) -> None:
    """Create the events topic with the configured partitions, as the worker would."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**client_options(settings))
    code = 0
    try:
        await asyncio.wait_for(admin.start(), CONNECT_TIMEOUT)
        if topic not in await admin.list_topics():
            new = NewTopic(
                topic,
                num_partitions=settings.events_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={
                    **settings.topic_configs,
                    "retention.ms": str(settings.events_retention_ms),
                },
            )
            response = await admin.create_topics([new])
            (_, code, *_) = response.topic_errors[0]
    except Exception as exc:
        raise await unreachable(settings, exc) from None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if code in REFUSAL_CODES:
        raise CommandError(topic_refused(settings), EXIT_USAGE)
    if code not in (0, ALREADY_EXISTS):
        raise CommandError(f"Kafka refused to create {topic} (error code {code})", EXIT_USAGE)


async def start_producer(settings: Settings) -> AIOKafkaProducer:
    """An idempotent producer that waits for all replicas, or a clear 'unreachable' error."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=max(1024 * 1024, 2 * settings.max_event_bytes + 4096),
    )
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise await unreachable(settings, exc) from None
    return producer


class Sender:
    """Sends records in order and settles their delivery futures, oldest first."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        stats: SendStats,
        on_failure: Callable[[Outgoing, BaseException], None],
        advance: Callable[[int], None],
    ) -> None:
        self.topic = settings.events_topic
        self.producer = producer
        self.stats = stats
        self.on_failure = on_failure
        self.advance = advance
        self.pending: deque[tuple[asyncio.Future[Any], Outgoing]] = deque()
        self.unreported = 0  # settled but not yet shown: the bar is updated in steps

    async def send(self, record: Outgoing) -> None:
        self.stats.attempted += 1
        try:
            future = await self.producer.send(self.topic, value=record.value, key=record.key)
        except Exception as exc:
            self._failed(record, exc)
            return
        self.pending.append((future, record))
        if len(self.pending) >= MAX_IN_FLIGHT:
            await self.settle_one()

    async def settle_one(self) -> None:
        future, record = self.pending.popleft()
        try:
            await future
        except Exception as exc:
            self._failed(record, exc)
            return
        self.stats.confirmed += 1
        self._step()

    async def settle_done(self) -> None:
        while self.pending and self.pending[0][0].done():
            await self.settle_one()
        self._step(flush=True)

    async def settle_all(self) -> None:
        while self.pending:
            await self.settle_one()
        self._step(flush=True)

    def _step(self, flush: bool = False) -> None:
        self.unreported += not flush
        if self.unreported and (flush or self.unreported >= 500):
            self.advance(self.unreported)
            self.unreported = 0

    def _failed(self, record: Outgoing, exc: BaseException) -> None:
        self.stats.failed += 1
        self.on_failure(record, exc)
        self._step()


def _stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Ctrl-C or SIGTERM ends the send loop cleanly, so the summary still covers what was sent."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def restore() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return restore


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def send_all(
    settings: Settings,
    records: Iterable[Outgoing],
    *,
    total: int | None,
    description: str,
    console: Console,
    pacer: Pacer | None = None,
    on_failure: Callable[[Outgoing, BaseException], None] | None = None,
    duration: float | None = None,
) -> SendStats:
    """Produce records in order (key = customer id) and wait until Kafka confirms each one.

    Stops early, cleanly, on Ctrl-C / SIGTERM or after `duration` seconds.
    """
    quiet_kafka_logs()
    pacer = pacer or Pacer()
    await ensure_topic(settings, settings.events_topic)
    producer = await start_producer(settings)
    stats = SendStats()
    stop = asyncio.Event()
    restore = _stop_on_signals(stop)
    deadline = None if duration is None else time.monotonic() + duration
    t0 = time.monotonic()
    try:
        with progress_bar(console) as progress:
            task = progress.add_task(description, total=total)
            sender = Sender(
                settings,
                producer,
                stats,
                on_failure or (lambda _record, _exc: None),
                lambda n: progress.advance(task, n),
            )
            for index, record in enumerate(records):
                wait = pacer.delay(index, record.ts_ms)
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                if wait > 0:
                    await sender.settle_done()
                    await _pause(stop, wait)
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                await sender.send(record)
            await sender.settle_all()
    finally:
        restore()
        await producer.stop()
        stats.seconds = time.monotonic() - t0
    return stats
