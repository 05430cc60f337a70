"""The exporter's own writer against prometheus-client's: same bytes for the same families.

metrics/exposition.py writes /metrics itself because prometheus-client's writers were
the slowest part of a 20k-sample scrape; these tests pin it to those writers (text
0.0.4 / 1.0.0 and OpenMetrics 1.0.0), and the WSGI app to prometheus-client's app for
every request it does not write itself.
"""

from __future__ import annotations

import gzip
import io
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from metrics.exporter import metrics_app
from metrics.exposition import Family, go_float, render

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def families() -> list[Family]:
    """Every shape the collector makes, with values and label texts that need care."""
    counter = Family("retention_events", "Unique events, by type.", ("type",), "counter")
    counter.add(("purchase",), 12)
    counter.add(('say "hi"\\now\n',), 3)
    empty = Family("retention_nps", "No answers yet.")
    empty.add((), None)
    single = Family("retention_watermark_seconds", 'Back\\slash, "quotes"\nand a newline.')
    single.add((), 1_764_000_000.5)
    cells = Family("retention_cohort_ratio", "Ratio.", ("cohort_period", "cohort", "offset"))
    shared = Family("retention_cohort_retained", "Count.", ("cohort_period", "cohort", "offset"))
    for offset, value in enumerate((1.0, 0.5, 1 / 3, 0.0, -0.0, 1e-7, 2.5e-5)):
        where = ("day", "2026-03-02", str(offset))
        cells.add(where, value)
        shared.add(where, offset * 1_000_003)
    odd = Family("retention_breakdown_crr", "Odd values.", ("value", "dimension", "period"))
    for i, value in enumerate((float("inf"), float("-inf"), 1234567.0, -1234567.0, 10**17, 0)):
        odd.add((f"v{i}", "platform", "week"), value)
    return [counter, empty, single, cells, shared, odd]


class Fixed(Collector):
    def __init__(self, fams: list[Family]) -> None:
        self.fams = fams

    def collect(self) -> Any:
        return [family.metric() for family in self.fams]

    def families(self) -> list[Family]:
        return self.fams


def registry_of(collector: Fixed) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def test_text_matches_prometheus_client() -> None:
    registry = registry_of(Fixed(families()))
    assert render(families()) == generate_latest(registry)


def test_openmetrics_matches_prometheus_client() -> None:
    registry = registry_of(Fixed(families()))
    assert render(families(), openmetrics=True) == openmetrics_latest(registry)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**20), 10**20))
def test_go_float_matches_float_to_go_string(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


def call(app: Any, accept: str = "", encoding: str = "", query: str = "", method: str = "GET"):
    """One WSGI request: status, headers and the (gunzipped) body."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/metrics",
        "QUERY_STRING": query,
        "HTTP_ACCEPT": accept,
        "HTTP_ACCEPT_ENCODING": encoding,
        "wsgi.input": io.BytesIO(),
    }
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    if got["headers"].get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
        del got["headers"]["Content-Encoding"]
    return got["status"], got["headers"], body


def test_app_answers_as_prometheus_client_does() -> None:
    collector = Fixed(families())
    ours = metrics_app(collector, registry_of(collector))  # type: ignore[arg-type]
    theirs = make_wsgi_app(registry_of(Fixed(families())))
    for request in (
        {},
        {"accept": PROMETHEUS_ACCEPT, "encoding": "gzip"},
        {"accept": "text/plain;version=1.0.0;escaping=allow-utf-8"},
        {"accept": "text/plain;version=1.0.0;escaping=dots"},
        {"accept": "application/openmetrics-text;version=1.0.0;escaping=values"},
        {"query": "name[]=retention_nps"},
        {"method": "OPTIONS"},
        {"method": "POST"},
    ):
        assert call(ours, **request) == call(theirs, **request), request
