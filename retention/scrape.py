"""Fetch the exporter's /metrics and group the samples by name, whatever metrics exist.

`report` and `status` read metrics through this, so a metric added to the exporter
shows up without changes here.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from core.errors import EXIT_UNREACHABLE, CommandError
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    """All samples of one name (a counter's `_total` is its own family here)."""

    name: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def label_names(self) -> frozenset[str]:
        return frozenset(k for s in self.samples for k in s.labels)

    def value(self, **labels: str) -> float | None:
        for s in self.samples:
            if s.labels == labels:
                return s.value
        return None


@dataclass
class Scrape:
    url: str
    families: dict[str, Family]
    seconds: float

    def get(self, name: str, **labels: str) -> float | None:
        family = self.families.get(name)
        return None if family is None else family.value(**labels)


def exporter_url(settings: Settings) -> str:
    return f"http://{settings.exporter_host}:{settings.exporter_port}/metrics"


def parse(text: str) -> dict[str, Family]:
    families: dict[str, Family] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            target = families.setdefault(s.name, Family(s.name, family.documentation))
            target.samples.append(Sample(dict(s.labels), float(s.value)))
    return families


def fetch(url: str, timeout: float = 10.0) -> Scrape:
    """One scrape, or a CommandError that says what to start."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(
            f"cannot reach the exporter at {url} ({reason}). Start it with "
            "`retention exporter` (or run `retention demo`); `retention status` checks "
            "Kafka, Redis and the exporter in one go.",
            EXIT_UNREACHABLE,
        ) from None
    try:
        families = parse(text)
    except ValueError as exc:
        raise CommandError(f"{url} did not answer in Prometheus text format ({exc})") from None
    return Scrape(url, families, time.monotonic() - t0)
