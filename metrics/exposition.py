"""Metric families as plain label tuples, written straight to the exposition formats.

prometheus-client builds a Sample with a label dict per sample, then sorts, checks
and escapes every label set again as it writes; at ~20k samples per scrape that cost
more than reading Redis. A Family keeps label values as tuples, and the writer
formats each distinct label set (from a template already in sorted label order) and
each distinct value once per scrape; the cohort families share their label sets.
The bytes are exactly those of prometheus-client's Prometheus text (0.0.4 and 1.0.0)
and OpenMetrics 1.0.0 writers for the same families (tests/test_exposition.py), and
`Family.metric()` hands the same samples to prometheus-client where a registry is
wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

Sample = tuple[tuple[str, ...], float]

# prometheus-client's number formatting (Go's), untyped in the library.
_go_string: Callable[[float], str] = floatToGoString


@dataclass(slots=True)
class Family:
    """One metric family: a name, its label names and (label values, value) samples."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    kind: str = "gauge"  # or "counter", whose samples carry the `_total` suffix
    samples: list[Sample] = field(default_factory=list)

    def add(self, values: tuple[str, ...], value: float | None) -> None:
        """Add a sample unless the value is undefined (a ratio over zero)."""
        if value is not None:
            self.samples.append((values, value))

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def metric(self) -> Metric:
        """The same family as a prometheus-client Metric, for registries and generate_latest."""
        metric = Metric(self.name, self.documentation, self.kind)
        name = self.sample_name
        for values, value in self.samples:
            metric.add_sample(name, dict(zip(self.labels, values, strict=True)), value)
        return metric


def render(families: Iterable[Family], openmetrics: bool = False) -> bytes:
    """Prometheus text format, or OpenMetrics 1.0.0 when asked for."""
    numbers = _Numbers()
    label_sets = _LabelSets()
    out: list[str] = []
    for family in families:
        out += _header(family, openmetrics)
        name = family.sample_name
        if family.labels:
            labels = label_sets[family.labels]
            out += [
                f"{name}{labels[values]} {numbers[value]}\n" for values, value in family.samples
            ]
        else:
            out += [f"{name} {numbers[value]}\n" for _, value in family.samples]
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode()


def go_float(value: float) -> str:
    """floatToGoString, without its checks for the common case: a finite value whose
    repr has at most six digits before the point (Go switches to exponents later)."""
    text = repr(float(value))
    if text.find(".") > 6 or text[-1] in "fn":  # inf, nan, or large enough for e+NN
        return _go_string(value)
    return text


def _header(family: Family, openmetrics: bool) -> list[str]:
    """HELP and TYPE lines; the text format names a counter family with `_total`."""
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        name, doc = family.name, doc.replace('"', r"\"")
    else:
        name = family.sample_name
    return [f"# HELP {name} {doc}\n", f"# TYPE {name} {family.kind}\n"]


class _Numbers(dict[float, str]):
    """Sample values as Go prints them, each distinct value formatted once. Zero is
    never kept: 0 and -0.0 are one key but print differently."""

    def __missing__(self, value: float) -> str:
        text = go_float(value)
        if value:
            self[value] = text
        return text


class _Escaped(dict[str, str]):
    """Label values escaped for the exposition (backslash, newline, quote), each once."""

    def __missing__(self, value: str) -> str:
        text = self[value] = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        return text


class _Labels(dict[tuple[str, ...], str]):
    """`{a="..",b=".."}` of one set of label names, with the names sorted as both
    writers sort them; each distinct tuple of values is formatted once."""

    def __init__(self, names: tuple[str, ...], escaped: _Escaped) -> None:
        super().__init__()
        order = sorted(range(len(names)), key=names.__getitem__)
        self.template = "{{" + ",".join(f'{names[i]}="{{{i}}}"' for i in order) + "}}"
        self.escaped = escaped

    def __missing__(self, values: tuple[str, ...]) -> str:
        text = self[values] = self.template.format(*map(self.escaped.__getitem__, values))
        return text


class _LabelSets(dict[tuple[str, ...], _Labels]):
    """One `_Labels` per set of label names: families that share label names (the
    cohort cells) share the formatted label strings too."""

    def __init__(self) -> None:
        super().__init__()
        self.escaped = _Escaped()

    def __missing__(self, names: tuple[str, ...]) -> _Labels:
        labels = self[names] = _Labels(names, self.escaped)
        return labels
