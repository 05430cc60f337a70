"""The metric names a PromQL expression reads, without a PromQL parser.

A name is an identifier that is not a function or aggregation (those are followed by
`(`), not a keyword, and not a label: label names sit inside `{...}` matchers and in
the lists after `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`, so
those are cut out first, with string literals (label values), `[...]` ranges and
Grafana's `$variables`.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "inf",
        "nan",
    }
)
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\[\]]*\]")
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
# A whole identifier (no backtracking into a shorter one) that is not a call.
IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Every metric (or recorded series) name the expression selects."""
    text = STRING.sub('""', expr)
    text = GRAFANA_VARIABLE.sub("", text)
    text = MATCHERS.sub("", text)
    text = RANGE.sub("", text)
    text = LABEL_LIST.sub("", text)
    names = {m[1] for m in IDENTIFIER.finditer(text)}
    return {n for n in names if n.lower() not in KEYWORDS}


def label_values_selector(query: str) -> str:
    """The series selector of a Grafana `label_values(selector, label)` variable query."""
    m = re.fullmatch(r"\s*label_values\((.+),\s*\w+\)\s*", query)
    assert m, f"unsupported variable query {query!r}"
    return m[1]
