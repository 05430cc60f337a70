"""Every key a Lua script touches is declared in its KEYS, all in one shard's hash slot.

Redis Cluster requires it (a script may only touch keys of its node, and the client
routes a call by the keys it declares) but does not check it: a script reaching a key
it was not given works until that key lives elsewhere. Redis ACLs do check it: each
call here runs as a user allowed exactly the call's KEYS, so an undeclared key is
refused with NOPERM. The worker's own calls (batch, sweep, breakdown codes) are run
that way over a generated history on a private redis-server.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from core.redis_client import async_client, sync_client
from core.redis_types import AsyncRedis
from core.schema import Keys, lua_header, registry_key
from core.settings import Settings
from metrics.aggregates import AggregateReader
from metrics.snapshot import Snapshot
from retention.rebuild import clear_namespace
from streams.lifecycle import LifecyclePublisher
from streams.scripts import ScriptCall
from streams.state import Record, StateWriter, spans_of
from tests.cluster_fixtures import outboxes, per_customer, records_of, sweep
from tests.history import generate_history
from tests.services import free_port, tail

pytestmark = pytest.mark.integration

PROBE = "declared-keys-only"
BATCH = 150
# What the sweep script did before its buckets were declared: build a key from ARGV.
UNDECLARED = lua_header() + "return redis.call('HGETALL', ARGV[1])"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own, whose ACL users the tests may change."""
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = workdir / "redis.log"
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with log.open("ab") as out:
        server = subprocess.Popen(
            [*args, "--appendonly", "no", "--dir", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_ping(url, server, log)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _wait_for_ping(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"redis-server exited\n{tail(log)}")
        try:
            if sync_client(Settings(redis_url=url), timeout=5).ping():
                return
        except redis.ConnectionError:
            time.sleep(0.1)
    pytest.fail(f"redis-server did not answer\n{tail(log)}")


def clients(url: str) -> tuple[AsyncRedis, AsyncRedis]:
    """An administrator's client of the private server, and the probe user's."""
    probe_url = url.replace("redis://", f"redis://{PROBE}:any@", 1)
    return (
        async_client(Settings(redis_url=url), timeout=30),
        async_client(Settings(redis_url=probe_url), timeout=30),
    )


def glob_escape(key: str) -> str:
    """An ACL key pattern matching exactly this key."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", key)


class DeclaredKeysOnly:
    """Runs script calls as a user that may touch exactly the keys each call declares."""

    def __init__(self, admin: AsyncRedis, probe: AsyncRedis) -> None:
        self.admin, self.probe = admin, probe
        self.calls: Counter[str] = Counter()  # per script

    async def run(self, call: ScriptCall) -> Any:
        slots = {key_slot(key.encode()) for key in call.keys}
        assert len(slots) == 1, f"keys of several slots in one call: {call.keys}"
        await self.admin.acl_setuser(
            PROBE,
            enabled=True,
            nopass=True,
            commands=["+@all"],
            keys=[glob_escape(key) for key in call.keys],
            reset_keys=True,
        )
        self.calls[call.script.sha] += 1
        return await self.probe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)


async def guarded_run(
    guard: DeclaredKeysOnly, admin: AsyncRedis, settings: Settings, records: list[Record]
) -> list[list[bytes]]:
    """Apply and sweep batch by batch as the worker does, each call under the guard;
    returns the shards' outboxes."""
    writer = StateWriter(admin, settings)
    publisher = LifecyclePublisher(admin, settings)
    for script in (writer.script, publisher.script, publisher.release_script):
        await admin.script_load(script.script)
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        calls = writer.script_calls(await writer.prepare(batch), "test", spans_of(batch))
        for call in calls:
            reply = await guard.run(call)
            assert len(reply) == 3, reply  # applied, duplicates, replayed: no hole
        mark = await publisher.watermark("test")
        hold = await publisher.acquire()
        shards = list(hold.shards)
        while shards:  # as LifecyclePublisher.sweep does, each call under the guard
            calls = await publisher.sweep_calls(mark, hold.token, shards)
            replies = [await guard.run(call) for call in calls]
            assert all(held == 1 and newer == 0 for *_, held, newer in replies), replies
            shards = [shard for shard, r in zip(shards, replies, strict=True) if r[2]]
        for call in publisher.release_calls(hold):
            assert await guard.run(call) == 1
    return await outboxes(admin, publisher)


def test_scripts_touch_only_their_declared_keys(private_redis: str) -> None:
    events = generate_history(seed=21, customers=150, days=60)
    layout: dict[str, Any] = {"redis_url": private_redis, "shards": 4, "customer_buckets": 32}
    guarded = Settings(namespace=f"g{uuid.uuid4().hex[:8]}", **layout)
    plain = Settings(namespace=f"p{uuid.uuid4().hex[:8]}", **layout)
    records = records_of(events, guarded, partitions=2)

    async def main() -> tuple[Counter[str], list[list[bytes]], list[list[bytes]], list[Snapshot]]:
        admin, probe = clients(private_redis)
        await admin.acl_setuser(PROBE, enabled=True, nopass=True, commands=["+@all"])
        guard = DeclaredKeysOnly(admin, probe)
        try:
            got = await guarded_run(guard, admin, guarded, records)
            registry = StateWriter(admin, guarded).dimensions
            codes = ScriptCall(registry.script, [registry_key(guarded.namespace, "platform")], [])
            await guard.run(codes._replace(args=["ios", guarded.dimension_cap]))
            # the same records the worker's way, unguarded
            writer, publisher = StateWriter(admin, plain), LifecyclePublisher(admin, plain)
            for start in range(0, len(records), BATCH):
                await writer.apply(records[start : start + BATCH])
                await sweep(publisher)
            with sync_client(Settings(redis_url=private_redis), timeout=30) as sync:
                snaps = [AggregateReader(sync, s).read() for s in (guarded, plain)]
            shas = {"batch": writer.script.sha, "sweep": publisher.script.sha}
            shas["release"] = publisher.release_script.sha
            shas["codes"] = registry.script.sha
            calls = Counter({name: guard.calls[sha] for name, sha in shas.items()})
            return calls, got, await outboxes(admin, publisher), snaps
        finally:
            await clear_namespace(admin, guarded.namespace)
            await clear_namespace(admin, plain.namespace)
            await admin.acl_deluser(PROBE)
            await admin.aclose()
            await probe.aclose()

    calls, got, clean, (snap, clean_snap) = asyncio.run(main())
    batch_calls = guarded.shards * -(-len(records) // BATCH)
    assert calls["batch"] == batch_calls
    assert calls["sweep"] >= batch_calls
    assert calls["release"] == batch_calls
    assert calls["codes"] == 1
    assert per_customer(got) == per_customer(clean)
    assert sum(map(len, got)) > 500
    assert snap == clean_snap
    assert snap.customers == 150


def test_an_undeclared_key_is_refused(private_redis: str) -> None:
    """The guard is no formality: a script reaching a key it was not given fails."""
    keys = Keys(f"u{uuid.uuid4().hex[:8]}", shards=1)

    async def main() -> None:
        admin, probe = clients(private_redis)
        await admin.acl_setuser(PROBE, enabled=True, nopass=True, commands=["+@all"])
        try:
            script = admin.register_script(UNDECLARED)
            await admin.script_load(script.script)
            guard = DeclaredKeysOnly(admin, probe)
            # allowed: the key it touches is declared
            await guard.run(ScriptCall(script, [keys.due(0)], [keys.due(0)]))
            with pytest.raises(ResponseError, match="can't access"):
                await guard.run(ScriptCall(script, [keys.due(0)], [keys.bucket(0, 7)]))
        finally:
            await admin.acl_deluser(PROBE)
            await admin.aclose()
            await probe.aclose()

    asyncio.run(main())


def test_a_standalone_server_that_forgot_its_scripts_gets_them_again(private_redis: str) -> None:
    """After SCRIPT FLUSH (as after a restart) the next batch and sweep still run whole:
    the same counts, changes and aggregates as a run whose server kept its scripts."""
    events = generate_history(seed=22, customers=40, days=30)
    layout: dict[str, Any] = {"redis_url": private_redis, "shards": 2}
    flushed = Settings(namespace=f"f{uuid.uuid4().hex[:8]}", **layout)
    kept = Settings(namespace=f"k{uuid.uuid4().hex[:8]}", **layout)
    records = records_of(events, flushed, partitions=1)
    halves = [records[: len(records) // 2], records[len(records) // 2 :]]
    Outcome = tuple[tuple[int, int], dict[str, list[bytes]], Snapshot]

    async def run(client: AsyncRedis, settings: Settings, flush: bool) -> Outcome:
        writer, publisher = StateWriter(client, settings), LifecyclePublisher(client, settings)
        applied = duplicates = 0
        for batch in halves:
            if flush:
                await client.script_flush()
            result = await writer.apply(batch)
            applied, duplicates = applied + result.applied, duplicates + result.duplicates
            if flush:
                assert await client.script_exists(writer.script.sha) == [True]
                await client.script_flush()
            await sweep(publisher)
            if flush:
                shas = [publisher.script.sha, publisher.release_script.sha]
                assert await client.script_exists(*shas) == [True, True]
        with sync_client(Settings(redis_url=private_redis), timeout=30) as sync:
            snap = AggregateReader(sync, settings).read()
        return (applied, duplicates), per_customer(await outboxes(client, publisher)), snap

    async def main() -> tuple[Outcome, Outcome]:
        client = async_client(Settings(redis_url=private_redis), timeout=30)
        try:
            return await run(client, flushed, True), await run(client, kept, False)
        finally:
            await clear_namespace(client, flushed.namespace)
            await clear_namespace(client, kept.namespace)
            await client.aclose()

    got, clean = asyncio.run(main())
    assert got == clean
    assert got[2].customers == 40 and len(got[1]) > 30
