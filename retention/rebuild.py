"""`retention rebuild`: clear a namespace and consume the events topic again from the start.

State is a function of the events topic and the settings, so after a settings change
(or to recover from a refused start) the only exact way forward is to derive it again.
The command itself is the consumer: it refuses while workers of the group are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

from core.errors import EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from core.kafka import client_options, explain_failure
from core.redis_client import REDIS_ERRORS, async_client, describe_failure
from core.redis_types import AsyncRedis
from core.settings import Settings
from streams.guard import eviction_problem, read_eviction_policy, record_fingerprint
from streams.pipeline.stages import BatchPipeline

SCAN_COUNT = 1000


async def rebuild(settings: Settings, console: Console) -> int:
    """Clear the namespace, record the settings, and apply the whole topic; returns the
    number of records consumed."""
    await _refuse_running_workers(settings)
    redis = async_client(settings, timeout=60)
    try:
        problem = eviction_problem(await read_eviction_policy(redis))
        if problem:
            raise CommandError(problem, EXIT_USAGE)
        removed = await clear_namespace(redis, settings.namespace)
        console.print(f"cleared {removed} keys of namespace {settings.namespace!r}")
        await record_fingerprint(redis, settings)
    except REDIS_ERRORS as exc:
        failure = describe_failure(settings, exc)
        raise CommandError(failure.message, EXIT_UNREACHABLE) from None
    finally:
        await redis.aclose()
    return await _consume_all(settings, console)


async def clear_namespace(redis: AsyncRedis, namespace: str) -> int:
    removed = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{namespace}:*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed += await redis.unlink(*batch)
            batch.clear()
    if batch:
        removed += await redis.unlink(*batch)
    return removed


async def _refuse_running_workers(settings: Settings) -> None:
    """Two consumers of the group would split the partitions between them."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        described = await admin.describe_consumer_groups([settings.group_id])
    except KafkaError as exc:
        failure = await explain_failure(settings, exc)
        raise CommandError(failure.message, EXIT_UNREACHABLE) from None
    finally:
        await admin.close()
    members = sum(len(group[5]) for response in described for group in response.groups)
    if members:
        raise CommandError(
            f"{members} consumer(s) of group {settings.group_id!r} are running; stop every "
            "`retention worker` first, then rebuild.",
            EXIT_USAGE,
        )


async def _consume_all(settings: Settings, console: Console) -> int:
    pipeline = BatchPipeline(settings)
    logging.getLogger("streams.pipeline").setLevel(logging.WARNING)
    columns = (*Progress.get_default_columns()[:-1], MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("rebuilding", total=None)
        run = asyncio.create_task(pipeline.run(until_caught_up=True))
        while not run.done():
            total = pipeline.target_records
            bar.update(task, completed=pipeline.progress.records, total=total or None)
            await asyncio.wait([run], timeout=0.5)
        bar.update(task, completed=pipeline.progress.records)
    with contextlib.suppress(asyncio.CancelledError):
        await run
    return pipeline.progress.records
