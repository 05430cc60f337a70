"""Load the Redis Lua scripts, each with the shared bitmap helpers in front."""

from __future__ import annotations

from importlib import resources


def load_script(name: str) -> str:
    folder = resources.files("streams")
    return folder.joinpath("bitmap.lua").read_text() + folder.joinpath(name).read_text()
