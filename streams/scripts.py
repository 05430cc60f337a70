"""Load the Redis Lua scripts, each with the shared helpers (bitmaps, customer storage) in front."""

from __future__ import annotations

from importlib import resources


def load_script(*names: str) -> str:
    """The named files, in order, after the bitmap helpers: later files use earlier ones."""
    folder = resources.files("streams")
    return "".join(folder.joinpath(name).read_text() for name in ("bitmap.lua", *names))
