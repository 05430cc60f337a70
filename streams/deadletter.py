"""Dead-letter records: the rejected record, why it was rejected and where it came from.

A record may be rejected for being too large, so its copy is capped: the dead-letter
record must always fit the producer's request size, or publishing it would stop the
worker. The size and SHA-256 of the full value still identify the original.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from aiokafka import ConsumerRecord

MAX_KEY_BYTES = 1024
MAX_DETAIL_CHARS = 1000


def dead_letter_record(
    message: ConsumerRecord, reason: str, detail: str, max_bytes: int
) -> tuple[bytes | None, bytes]:
    """(key, value) for the dead-letter topic; at most max_bytes of the original value and
    MAX_KEY_BYTES of its key are kept, so the record stays under 4/3 max_bytes + 16 KiB."""
    original: bytes = message.value or b""
    key: bytes | None = message.key
    kept = original[: max(max_bytes, 0)]
    body: dict[str, Any] = {
        "reason": reason,
        "detail": _clip(detail),
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp,
        "rejected_at_ms": int(time.time() * 1000),
        "original": base64.b64encode(kept).decode(),
        "original_size": len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
    }
    if len(kept) < len(original):
        body["truncated"] = True
    if key is not None and len(key) > MAX_KEY_BYTES:
        body["key_truncated"] = True
        body["key_size"] = len(key)
        body["key_sha256"] = hashlib.sha256(key).hexdigest()
        key = key[:MAX_KEY_BYTES]
    return key, json.dumps(body).encode()


def _clip(detail: str) -> str:
    """Characters UTF-8 cannot carry (lone surrogates) written as backslash escapes, so any
    JSON reader can read the record back; then at most MAX_DETAIL_CHARS."""
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
    return detail
