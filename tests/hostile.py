"""Byte strings that each stress one decoding rule, spliced into valid events by the
decoder's property tests and the end-to-end fuzz run."""

from __future__ import annotations

TOKENS = [
    b"\\ud800",  # a lone high surrogate escape
    b"\\udc00",  # a lone low surrogate escape
    b"\\ud83d\\ude00",  # a valid pair
    b"\\\\",
    b"\\u0000",
    b"1e400",  # beyond double range
    b"-1e400",
    b"1e306",  # finite, but overflows once scaled to thousandths
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"9" * 400,
    b"\xff",  # never in UTF-8
    b"\xc0\xaf",  # overlong encoding
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf0\x9f\x98",  # a truncated sequence
    b"[" * 300,
    b"{" * 50,
    b'"',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"inf"',
    b'"NaN"',
    b",",
    b":",
]
