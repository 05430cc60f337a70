"""Hostile records for the fuzz test: valid events, re-sent, mutated byte by byte or with
fields replaced, among generated JSON and random bytes, each with the decoder's verdict
and, for an accepted one, the document the oracle reads.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from core.settings import BUILTIN_TYPES, Settings
from retention.mapping import FIELDS as MAPPED_FIELDS
from streams.events import MAX_DEPTH, Event, EventDecoder, Rejected
from tests.history import generate_history
from tests.hostile import TOKENS
from tests.oracle import OracleSettings, pure_activity, ts_ms

FIELDS = [*MAPPED_FIELDS, "properties"]
TYPES = [*sorted(BUILTIN_TYPES), "identify", "purchsae"]
ODD_TEXT = ["", "\ud800", "\udfff", "a\x00b", "\u2028", "é", "😀", '"', "\\", "x" * 200, " "]


def rand_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(ODD_TEXT)
    if roll < 0.6:
        return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(12)))
    # any code point, surrogates included
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(8)))


def rand_number(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.randint(-(2**70), 2**70),
            rng.uniform(-1e9, 1e9),
            rng.choice([0, -0.0, 1e306, -1e306, 1e16, 2**63, 2**64, 10**400, 1.5e12]),
            float("nan"),
            float("inf"),
            -float("inf"),
            rng.randint(946_684_800_000, 1_780_000_000_000),
        ]
    )


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.55:
        kind = rng.randrange(5)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rand_number(rng)
        return rand_text(rng)
    if roll < 0.75:
        return [rand_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        (rng.choice(FIELDS) if rng.random() < 0.6 else rand_text(rng)): rand_json(rng, depth + 1)
        for _ in range(rng.randrange(6))
    }


def encode(value: Any, rng: random.Random) -> bytes:
    """JSON text, non-ASCII escaped or written out (a lone surrogate as its raw bytes)."""
    return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("flip", "flip", "insert", "token", "delete", "truncate"))
        at = rng.randrange(len(out) + 1)
        if op == "flip" and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == "insert":
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == "token":
            out[at : at + rng.randrange(7)] = rng.choice(TOKENS)
        elif op == "delete":
            del out[at : at + rng.randint(1, 8)]
        else:
            del out[at:]
    return bytes(out)


def hostile_field(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A valid event with one or two fields replaced by any JSON, removed, or an edge value."""
    out = dict(ev)
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(FIELDS)
        roll = rng.random()
        if roll < 0.2:
            out.pop(name, None)
        elif roll < 0.4 and name == "type":
            out[name] = rng.choice(TYPES)
        elif roll < 0.6 and name in ("amount", "score", "ts"):
            out[name] = rand_number(rng)
        else:
            out[name] = rand_json(rng)
    return out


def deeply_nested(value: bytes | None) -> bool:
    return value is not None and value.count(b"{") + value.count(b"[") > MAX_DEPTH


def nested_call(frames: int, fn: Callable[[], Any]) -> Any:
    """fn() called `frames` Python frames deeper than here."""
    return fn() if frames == 0 else nested_call(frames - 1, fn)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class Fuzz:
    records: list[tuple[bytes | None, bytes | None]]
    accepted: list[dict[str, Any]]  # as the oracle gets them, in produce order
    rejected: Counter[str]  # reason -> count
    reason_of: dict[str, str]  # sha256 of the value -> reason
    dropped: Counter[str]  # why generated records were left out


def fuzz_records(seed: int, total: int) -> Fuzz:
    rng = random.Random(seed)
    valid = generate_history(seed=seed, customers=800, days=45, start=date(2026, 3, 2))
    raw = [encode(e, rng) for e in valid]
    now = int(time.time() * 1000)
    decoder = EventDecoder(Settings())
    pure = pure_activity(OracleSettings())

    def candidate() -> tuple[bytes | None, bytes | None]:
        roll = rng.random()
        n = rng.randrange(len(valid))
        home = valid[n]["customer_id"].encode()
        if roll < 0.10:
            return home, raw[n]  # a re-send
        if roll < 0.55:
            return home, mutate(raw[n], rng)
        if roll < 0.70:
            return home, encode(hostile_field(valid[n], rng), rng)
        if roll < 0.90:
            return None, encode(rand_json(rng), rng)
        if roll < 0.96:
            return None, bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        if roll < 0.985:
            return home, rng.choice([None, b""])  # tombstone, empty value
        if roll < 0.99:
            return home, mutate(
                nested(rng.choice([rng.randint(40, 90), rng.randint(1000, 6000)])), rng
            )
        if roll < 0.991:
            pad = {"pad": "x" * rng.randint(65_000, 80_000)}
            return home, encode({**valid[n], "properties": pad}, rng)
        return home, encode(hostile_field(valid[n], rng), rng)

    def decide(value: bytes | None, at: int) -> Event | str:
        try:
            return decoder.decode(value, now_ms=at)
        except Rejected as exc:
            return str(exc.reason)

    def depends_on_stack(value: bytes | None, at: int, verdict: Event | str) -> bool:
        """Whether a shallow stack (a new thread's) or a deeper one than this test's
        decides otherwise."""
        with ThreadPoolExecutor(1) as pool:
            shallow = pool.submit(decide, value, at).result()
        deep = nested_call(250, lambda: decide(value, at))
        return not (verdict == shallow == deep)

    records: list[tuple[bytes | None, bytes | None]] = []
    accepted: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    reason_of: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    # The valid history first, in order; then the rest mixed.
    queue: Iterator[tuple[bytes | None, bytes | None]] = iter(
        [(e["customer_id"].encode(), v) for e, v in zip(valid, raw, strict=True)]
    )
    while len(records) < total:
        k, value = next(queue, None) or candidate()
        verdict = decide(value, now)
        later = decide(value, now + 15 * 60_000)  # when the worker decodes it
        if type(verdict) is not type(later) or (isinstance(verdict, str) and verdict != later):
            dropped["decided differently a few minutes later"] += 1
            continue
        if deeply_nested(value):
            # the verdict is the bytes' alone, not the calling stack's
            assert not depends_on_stack(value, now, verdict), value[:200] if value else value
        if isinstance(verdict, str):
            rejected[verdict] += 1
            reason_of[hashlib.sha256(value or b"").hexdigest()] = verdict
            roll = rng.random()
            key_ = k if roll < 0.5 else None if roll < 0.7 else rng.randbytes(rng.randrange(40))
            if value is None and key_ is None:
                key_ = b"tombstone"  # Kafka needs a key or a value
            records.append((key_, value))
            continue
        if verdict.ts_ms > now:
            # ahead of the wall clock: the watermark stops at the clock, the oracle's does not
            dropped["accepted, ts ahead of the wall clock"] += 1
            continue
        assert value is not None
        try:
            doc = json.loads(value)
        except ValueError:
            dropped["accepted, but Python's json cannot read it"] += 1
            continue
        if not isinstance(doc, dict) or doc.get("messageId") is not None:
            dropped["accepted in Segment format"] += 1
            continue
        # The oracle reads the same document the same way the decoder did.
        amount = round(float(doc.get("amount") or 0) * 1000)
        mine = (doc["customer_id"], doc["type"], ts_ms(doc["ts"]), amount)
        theirs = (
            verdict.customer_id,
            verdict.type,
            verdict.ts_ms,
            round((verdict.amount or 0) * 1000),
        )
        assert mine == theirs, f"decoder and oracle read {value!r} differently: {theirs} {mine}"
        # Ids are remembered per customer for events that move counters; visits are
        # idempotent by day whatever their id: give the oracle ids with that meaning.
        if doc["type"] in pure:
            doc["event_id"] = f"visit#{len(records)}"
        else:
            doc["event_id"] = f"{doc['customer_id']}\x1f{doc['event_id']}"
        accepted.append(doc)
        records.append((verdict.customer_id.encode(), value))
    return Fuzz(records, accepted, rejected, reason_of, dropped)
