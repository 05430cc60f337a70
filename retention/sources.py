"""Read rows from CSV/TSV, space-separated columns, JSON Lines, JSON arrays or
Segment/RudderStack exports, file or stdin.

Each row keeps its line number and original text so a rejected row can be written out
exactly as it came in. Column files have a header line, or are headerless: then the
columns are named with --columns, or recognised as a known layout (CDNOW's purchase
history, `customer_id date number_of_cds dollar_value`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from core.errors import EXIT_USAGE, CommandError

FORMATS = ("auto", "csv", "json")
CSV_SUFFIXES = (".csv", ".tsv")
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
# Columns separated by runs of spaces (and tabs): `--delimiter space`, or detected when
# the first line has no comma, tab, semicolon or bar but several words.
SPACES = "space"
SPACE_NAMES = frozenset({SPACES, "spaces", "whitespace", " "})
LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Layout:
    """A headerless file's known column layout, and the type its rows imply."""

    name: str
    columns: tuple[str, ...]
    event_type: str
    shape: tuple[re.Pattern[str], ...]  # what each cell of a data line looks like


# CDNOW's purchase history: `00001 19970101 1 11.77`, one purchase a line
CDNOW = Layout(
    "CDNOW",
    ("customer_id", "date", "number_of_cds", "dollar_value"),
    "purchase",
    tuple(re.compile(p) for p in (r"^\d+$", r"^\d{8}$", r"^\d+$", r"^\d+(\.\d+)?$")),
)
LAYOUTS = (CDNOW,)


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
    event_type: str | None = None  # the type a known layout implies for every row
    layout: str | None = None  # the known layout's name, for the summary


def open_source(
    path: str,
    fmt: str = "auto",
    delimiter: str | None = None,
    columns: Sequence[str] | None = None,
) -> Source:
    """Open a file (optionally .gz) or `-` for stdin and pick the reader; errors exit 2.
    `columns` names the columns of a headerless file (its first line is data)."""
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
        sep = SPACES if sep in SPACE_NAMES else sep
        return _column_source(stream, name, sep, lines, list(columns) if columns else None)
    if columns:
        raise CommandError("--columns names the columns of a CSV or space-separated file")
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
    first = next((line for line in head.splitlines() if line.strip()), "")
    counts = {sep: first.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    if counts[best]:
        return best
    return SPACES if len(first.split()) > 1 else ","


def _column_source(
    stream: _Chain, name: str, sep: str, lines: int | None, named: list[str] | None
) -> Source:
    """A header line names the columns, unless --columns does or the first line is data
    (no cell holds a letter), as in a headerless export of a known layout."""
    reader: Iterator[list[str]] = _SpaceReader(stream) if sep == SPACES else _CsvReader(stream, sep)
    first = _first_cells(reader, name)
    if named is None and any(LETTER.search(cell) for cell in first):
        header, data = [c.strip() for c in first], []
    else:
        header, data = named or _layout_columns(first, name), [first]
    if not any(header):
        raise CommandError(f"{name}: the first line is not a header")
    layout = next((x for x in LAYOUTS if [c.lower() for c in header] == list(x.columns)), None)
    rows = _csv_rows(reader, header, sep, data)
    count = None if lines is None else max(lines - (0 if data else 1), 0)
    event_type = layout.event_type if layout else None
    return Source(name, "csv", header, rows, count, event_type, layout.name if layout else None)


def _first_cells(reader: Iterator[list[str]], name: str) -> list[str]:
    try:
        return next(cells for cells in reader if any(c.strip() for c in cells))
    except (StopIteration, csv.Error) as exc:
        raise CommandError(f"{name}: cannot read a first line ({exc})", EXIT_USAGE) from None


def _layout_columns(first: list[str], name: str) -> list[str]:
    """The columns of a headerless file whose first line fits a known layout."""
    for layout in LAYOUTS:
        shape = layout.shape
        if len(first) == len(shape) and all(
            p.match(c.strip()) for p, c in zip(shape, first, strict=True)
        ):
            return list(layout.columns)
    raise CommandError(
        f"{name}: the first line ({' '.join(first)!r}) is data, not a header, and fits no "
        "known layout; name the columns with --columns, e.g. "
        "--columns customer_id,ts,type,amount"
    )


class _CsvReader:
    """csv.reader that also says on which line its last row started."""

    def __init__(self, stream: _Chain, sep: str) -> None:
        self.reader = csv.reader(stream, delimiter=sep)
        self.line = 0

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        self.line = self.reader.line_num + 1
        return next(self.reader)


class _SpaceReader:
    """Lines split on runs of spaces and tabs; a line is a row (no quoting)."""

    def __init__(self, stream: _Chain) -> None:
        self.lines = iter(stream)
        self.line = 0

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        self.line += 1
        return next(self.lines).split()


def _csv_rows(reader: Any, columns: list[str], sep: str, data: list[list[str]]) -> Iterator[Row]:
    """Rows of cells; `data` holds a first line already read that is a row, not a header."""
    for cells in data:
        yield _row(reader.line, cells, columns, sep)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(reader.line, None, "", f"unreadable CSV row: {exc}")
            continue
        if not cells or not any(c.strip() for c in cells):
            continue  # blank line
        yield _row(reader.line, cells, columns, sep)


def _row(line: int, cells: list[str], columns: list[str], sep: str) -> Row:
    if len(cells) != len(columns):
        problem = f"row has {len(cells)} fields, the header has {len(columns)}"
        return Row(line, None, _csv_line(cells, sep), problem)
    return Row(line, dict(zip(columns, cells, strict=True)), "")


def _csv_line(cells: list[str], sep: str) -> str:
    if sep == SPACES:
        return " ".join(cells)
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
