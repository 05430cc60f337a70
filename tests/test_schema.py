"""Stored names are spelled in core/schema.py alone (and in the Lua header it generates).

Every string literal of the Python and Lua sources is checked against the schema: one
that starts like a stored field (a field prefix, after an optional interpolation such
as a breakdown scope), names a key kind of the shard layout, or is a plain totals field
given to a Redis hash command (or, in Lua, anywhere) fails the test. Python f-strings are
checked with each interpolation standing for any text, so f"{scope}z:{code}" and
b"o:" are caught, as is Lua's 'o:' .. part.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.schema import (
    BATCH_KEYS,
    FIELD_GROUPS,
    SWEEP_KEYS,
    DaysField,
    Keys,
    lua_header,
    names,
)
from streams.scripts import load_script
from streams.state import BATCH_MODULES

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("core", "streams", "metrics", "retention", "bench", "tests")
SCHEMA = ROOT / "core" / "schema.py"
HOLE = "\0"  # stands for an interpolated value in a Python f-string
HASH_COMMANDS = {"hget", "hmget", "hset", "hincrby", "hdel", "hexists", "hsetnx"}
# Files with a layout of their own: the benchmark's naive baseline tracker.
OWN_LAYOUT = {ROOT / "bench" / "naive.py"}
# Literals that only look like stored names: (file, literal) and why.
LOOKALIKES = {("retention/simulate/generator.py", "c:"): "a customer id made of field-like text"}

FIELD_VALUES = {v for group in FIELD_GROUPS for v in names(group).values()}
PREFIXES = sorted((v for v in FIELD_VALUES if v.endswith(":")), key=len, reverse=True)
PLAIN = {v for v in FIELD_VALUES if not v.endswith(":") and len(v) > 1}
WINDOW = re.escape(DaysField.ACTIVE_IN_WINDOW) + rf"(?:\d+|{HOLE})+:"
FIELD = re.compile(rf"^{HOLE}?(?:{'|'.join(map(re.escape, PREFIXES))}|{WINDOW})")


def _key_pattern() -> re.Pattern[str]:
    """Key kinds as the schema spells them: what follows the shard tag or namespace."""
    keys = Keys(HOLE, 1)
    tag = keys.tag(0)
    tails = {getattr(keys, name)(0).removeprefix(tag) for name in (*BATCH_KEYS, *SWEEP_KEYS)}
    tails.add(keys.bucket_prefix(0).removeprefix(tag))
    tails.add(keys.fingerprint().removeprefix(HOLE))
    tails.add(keys.registry(HOLE).removeprefix(HOLE).removesuffix(HOLE))
    shard_tag = tag.removeprefix(HOLE).removesuffix("0}")
    alternatives = [rf"{re.escape(t)}(?:$|{HOLE}|:)" for t in tails] + [re.escape(shard_tag)]
    return re.compile("|".join(alternatives))


KEY = _key_pattern()


def offending(text: str) -> str | None:
    """Why a literal (with HOLE for interpolations) spells a stored name, or None."""
    if FIELD.match(text):
        return "field"
    if KEY.search(text):
        return "key"
    return None


def python_literals(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, text, given to a hash command) of every string and bytes literal."""
    tree = ast.parse(path.read_text(), str(path))
    hash_args: set[int] = set()
    inside_fstring: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in HASH_COMMANDS
        ):
            for arg in node.args:
                hash_args.update(id(n) for n in ast.walk(arg))
        if isinstance(node, ast.JoinedStr):
            inside_fstring.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and id(node) not in inside_fstring:
            parts = [
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else HOLE
                for v in node.values
            ]
            yield node.lineno, "".join(parts), id(node) in hash_args
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str | bytes)
            and id(node) not in inside_fstring
        ):
            value = node.value
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            yield node.lineno, text, id(node) in hash_args


LUA_TOKEN = re.compile(r"--\[\[.*?\]\]|--[^\n]*|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"", re.S)


def lua_literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every quoted string of a Lua source, comments skipped."""
    for match in LUA_TOKEN.finditer(source):
        token = match.group()
        if not token.startswith("--"):
            yield source.count("\n", 0, match.start()) + 1, token[1:-1]


def sources(suffix: str) -> list[Path]:
    found = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob(f"*{suffix}"))]
    skipped = {SCHEMA, Path(__file__).resolve(), *OWN_LAYOUT}
    return [p for p in found if p not in skipped]


def test_no_stored_name_outside_the_schema() -> None:
    found = []
    for path in sources(".py"):
        for line, text, to_hash in python_literals(path):
            why = offending(text) or ("totals field" if to_hash and text in PLAIN else None)
            if why and (str(path.relative_to(ROOT)), text) not in LOOKALIKES:
                found.append(f"{path.relative_to(ROOT)}:{line}: {why} {text!r}")
    for path in sources(".lua"):
        for line, text in lua_literals(path.read_text()):
            why = offending(text) or ("totals field" if text in PLAIN else None)
            if why:
                found.append(f"{path.relative_to(ROOT)}:{line}: {why} {text!r}")
    assert not found, "stored names spelled outside core/schema.py:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("local f = 'o:' .. part", True),
        ("incr(AGG, 'customers', 1)", True),
        ("local f = TotalsField.OFFSET_MARKER .. part", False),
    ],
)
def test_the_lua_rule_catches_spelled_names(source: str, caught: bool) -> None:
    hits = [t for _, t in lua_literals(source) if offending(t) or t in PLAIN]
    assert bool(hits) is caught, hits


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ('f"{prefix}z:{code}:{p}"', True),
        ('f"{prefix}a{n}:{today}"', True),
        ('b"o:"', True),
        ('f"{ns}:{{s:{shard}}}:agg"', True),
        ('redis.hget(key, "watermark_ms")', True),
        ('redis.hmget(key, ["watermark_ms", "customers"])', True),
        ('data["customers"] = 1', False),
        ('"at: the end"', False),
    ],
)
def test_the_python_rule_catches_spelled_names(tmp_path: Path, source: str, caught: bool) -> None:
    path = tmp_path / "sample.py"
    path.write_text(source + "\n")
    hits = [
        text
        for _, text, to_hash in python_literals(path)
        if offending(text) or (to_hash and text in PLAIN)
    ]
    assert bool(hits) is caught, hits


def test_every_script_loads_behind_the_header() -> None:
    for modules in (BATCH_MODULES, ("customer.lua", "sweep_lifecycle.lua")):
        assert load_script(*modules).startswith(lua_header())


def test_batch_modules_stay_small_and_state_their_contract() -> None:
    for name in BATCH_MODULES:
        text = (ROOT / "streams" / name).read_text()
        assert text.startswith("--"), f"{name} starts without a header comment"
        assert text.count("\n") <= 300, f"{name} has {text.count(chr(10))} lines"


def test_every_field_prefix_has_one_meaning() -> None:
    """No two stored prefixes are equal or start one another, in any hash: a field name
    is read back as one thing only."""
    prefixes = [v for group in FIELD_GROUPS for v in names(group).values() if v.endswith(":")]
    clashes = [(a, b) for a in prefixes for b in prefixes if a is not b and b.startswith(a)]
    assert not clashes
    assert len(set(prefixes)) == len(prefixes)
