"""Where the tests' real services are, and small helpers to reach them.

The same RETENTION_* variables that move the local stack (core/settings.py) move the tests.
"""

from __future__ import annotations

import socket
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RETENTION_BIN = ROOT / ".venv" / "bin" / "retention"
# The stack the tests run against: the same RETENTION_* variables move it and them.
STACK = Settings()
KAFKA = STACK.kafka_bootstrap
REDIS_URL = STACK.redis_url
REDIS_PORT = STACK.redis_port
PARTITIONS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"----- {path.name}: (no log) -----"
    return f"----- last {lines} lines of {path} -----\n" + "\n".join(text[-lines:])
