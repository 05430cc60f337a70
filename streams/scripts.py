"""Load the Redis Lua scripts, each behind the stored names and the shared helpers."""

from __future__ import annotations

from importlib import resources

from core.schema import lua_header


def load_script(*names: str) -> str:
    """The named files, in order, after the schema's Lua header (core/schema.py) and the
    bitmap helpers: later files use what earlier ones define."""
    folder = resources.files("streams")
    files = "".join(folder.joinpath(name).read_text() for name in ("bitmap.lua", *names))
    return lua_header() + files
