"""Read rows from CSV, JSON Lines, JSON arrays or Segment/RudderStack exports, file or stdin.

Each row keeps its line number and original text so a rejected row can be written out
exactly as it came in.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from core.errors import EXIT_USAGE, CommandError

FORMATS = ("auto", "csv", "json")
CSV_SUFFIXES = (".csv", ".tsv")
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}


@dataclass(frozen=True, slots=True)
class Row:
    """One input record: its parsed fields, or why it could not be parsed."""

    line: int
    data: dict[str, Any] | None
    raw: str  # the original text; kept for rows that could not be parsed
    error: str | None = None


@dataclass
class Source:
    name: str
    format: str  # "csv" or "json"
    columns: list[str] | None  # CSV header
    rows: Iterator[Row]
    lines: int | None  # rough total for the progress bar; None for stdin


def open_source(path: str, fmt: str = "auto", delimiter: str | None = None) -> Source:
    """Open a file (optionally .gz) or `-` for stdin and pick the reader; errors exit 2."""
    if fmt not in FORMATS:
        raise CommandError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    text, name, lines = _open_text(path)
    head, stream = _peek(text)
    if not head.strip():
        raise CommandError(f"{name} is empty: nothing to feed")
    suffix = _suffix(path)
    if fmt == "auto":
        fmt = _detect(suffix, head)
    if fmt == "csv":
        sep = delimiter or ("\t" if suffix == ".tsv" else _sniff_delimiter(head))
        return _csv_source(stream, name, sep, lines)
    return Source(name, "json", None, _json_rows(stream, head), lines)


def _open_text(path: str) -> tuple[TextIO, str, int | None]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline=""), "stdin", None
    file = Path(path)
    if not file.exists():
        raise CommandError(f"{path}: no such file")
    if file.is_dir():
        raise CommandError(f"{path} is a directory; give a file, or - for stdin")
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as counted:
            lines = sum(1 for _ in counted)
        stream = opener(file, "rt", encoding="utf-8-sig", newline="")
    except (OSError, EOFError) as exc:
        raise CommandError(f"{path}: cannot read ({exc})") from None
    return stream, str(path), lines


def _peek(stream: TextIO) -> tuple[str, _Chain]:
    """The first few KB, and a stream that still yields them."""
    try:
        head = stream.read(65536)
    except UnicodeDecodeError as exc:
        raise CommandError(f"input is not UTF-8 text ({exc})") from None
    return head, _Chain(head, stream)


class _Chain:
    """Text already read, followed by the rest of the stream (lines, or all of it)."""

    def __init__(self, head: str, tail: TextIO) -> None:
        self.head = io.StringIO(head)
        self.tail = tail

    def readline(self) -> str:
        line = self.head.readline()
        if line.endswith("\n"):
            return line
        return line + self.tail.readline()

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line

    def read(self) -> str:
        return self.head.read() + self.tail.read()


def _suffix(path: str) -> str:
    parts = Path(path).suffixes
    parts = [p for p in parts if p != ".gz"]
    return parts[-1].lower() if parts else ""


def _detect(suffix: str, head: str) -> str:
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSON_SUFFIXES:
        return "json"
    return "json" if head.lstrip()[:1] in ("{", "[") else "csv"


def _sniff_delimiter(head: str) -> str:
    first = head.splitlines()[0] if head else ""
    counts = {sep: first.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _csv_source(stream: _Chain, name: str, sep: str, lines: int | None) -> Source:
    reader = csv.reader(stream, delimiter=sep)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise CommandError(f"{name}: cannot read a CSV header ({exc})", EXIT_USAGE) from None
    columns = [c.strip() for c in header]
    if not any(columns):
        raise CommandError(f"{name}: the first line is not a CSV header")
    rows = _csv_rows(reader, columns, sep)
    return Source(name, "csv", columns, rows, None if lines is None else max(lines - 1, 0))


def _csv_rows(reader: Any, columns: list[str], sep: str) -> Iterator[Row]:
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, None, "", f"unreadable CSV row: {exc}")
            continue
        if not cells or not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(columns):
            problem = f"row has {len(cells)} fields, the header has {len(columns)}"
            yield Row(start, None, _csv_line(cells, sep), problem)
            continue
        yield Row(start, dict(zip(columns, cells, strict=True)), "")


def _csv_line(cells: list[str], sep: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=sep, lineterminator="").writerow(cells)
    return out.getvalue()


def _json_rows(stream: _Chain, head: str) -> Iterator[Row]:
    if head.lstrip().startswith("["):
        yield from _json_array(stream)
        return
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Row(number, None, text, f"malformed JSON: {exc}")
            continue
        yield from _json_value(number, value, text)


def _json_array(stream: _Chain) -> Iterator[Row]:
    try:
        items = json.loads(stream.read())
    except json.JSONDecodeError as exc:
        yield Row(exc.lineno, None, "", f"malformed JSON document: {exc}")
        return
    for number, item in enumerate(items, start=1):
        yield from _json_value(number, item, json.dumps(item))


def _json_value(number: int, value: Any, text: str) -> Iterator[Row]:
    """One JSON value: an object, or a Segment batch {"batch": [...]} of objects."""
    if isinstance(value, dict) and isinstance(value.get("batch"), list):
        for item in value["batch"]:
            yield from _json_value(number, item, json.dumps(item))
        return
    if not isinstance(value, dict):
        yield Row(number, None, text, f"not a JSON object but {type(value).__name__}")
        return
    yield Row(number, value, text)
