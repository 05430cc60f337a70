"""Passwords the stack makes for its own users: random, once per state directory, kept in
a file only the owner can read, so that a restarted service and its clients agree."""

from __future__ import annotations

import secrets
from pathlib import Path


def generated(where: Path) -> str:
    """The password in `where`, made now if the file does not exist yet."""
    if not where.is_file():
        where.parent.mkdir(parents=True, exist_ok=True)
        where.touch(mode=0o600)
        where.write_text(secrets.token_urlsafe(24) + "\n")
    return where.read_text().strip()
