"""Load the Redis Lua scripts, and run them in pipelines on a standalone Redis or a cluster."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from core.redis_types import AsyncRedis
from core.schema import lua_header


def load_script(*names: str) -> str:
    """The named files, in order, after the schema's Lua header (core/schema.py) and the
    bitmap helpers: later files use what earlier ones define."""
    folder = resources.files("streams")
    files = "".join(folder.joinpath(name).read_text() for name in ("bitmap.lua", *names))
    return lua_header() + files


class ScriptCall(NamedTuple):
    """One call of a registered script; all its keys lie in one hash slot."""

    script: AsyncScript
    keys: list[str]
    args: list[str | int | bytes]


async def run_scripts(redis: AsyncRedis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run the calls in one pipeline and return their replies in order.

    On a cluster the pipeline sends each node its calls. A server whose script cache is
    empty (restarted, failed over, SCRIPT FLUSH) answers NOSCRIPT without running the
    call, so those calls are sent again once the scripts are loaded: on a cluster
    SCRIPT LOAD goes to every primary.
    """
    replies = await _send(redis, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for text in {calls[i].script.script for i in missing}:
            await redis.script_load(text)
        retried = await _send(redis, [calls[i] for i in missing])
        for i, reply in zip(missing, retried, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _send(redis: AsyncRedis, calls: Sequence[ScriptCall]) -> list[Any]:
    """EVALSHA of every call in one pipeline; errors come back as replies.

    redis-py's cluster pipeline refuses its evalsha() method (it cannot know the script
    is loaded on every node), yet routes the EVALSHA command by its keys like any other,
    so the command is queued by name; a node without the script answers NOSCRIPT.
    """
    if not calls:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))
