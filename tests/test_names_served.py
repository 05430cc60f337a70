"""Every metric name a recording rule, an alert or a dashboard query reads exists.

A name is fine if the real worker or exporter serves it (scraped from their /metrics
after a history went through Kafka), if a recording rule produces it, or if
Prometheus itself makes it (`up`, `ALERTS`, scrape_*). A renamed health metric would
otherwise silently disable NoEventsIngested or ConsumerLagHigh: their expressions
would select nothing and never fire.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.history import generate_history
from tests.pipeline_runner import Pipeline
from tests.promql_names import label_values_selector, metric_names
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
# Series Prometheus writes itself: scrape health and the alerts' own state.
PROMETHEUS_BUILTINS = frozenset(
    {
        "up",
        "ALERTS",
        "ALERTS_FOR_STATE",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# The series an alert annotation looks up: {{ ... printf "name{label='%s'}" ... | query }}.
ANNOTATION_QUERY = re.compile(r'printf\s+"([A-Za-z_:][\w:]*)')


def rules() -> Iterator[dict[str, Any]]:
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def readers() -> dict[str, set[str]]:
    """Where each name is read: 'record X' / 'alert Y' / 'dashboard / panel' -> names."""
    found: dict[str, set[str]] = {}
    for rule in rules():
        where = f"record {rule['record']}" if "record" in rule else f"alert {rule['alert']}"
        names = metric_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            names |= set(ANNOTATION_QUERY.findall(text))
        found[where] = names
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            exprs = " ".join(t["expr"] for t in panel["targets"])
            found[f"{path.stem} / {panel['title']}"] = metric_names(exprs)
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                selector = label_values_selector(variable["query"]["query"])
                found[f"{path.stem} / ${variable['name']}"] = metric_names(selector)
    return found


def served(port: int) -> set[str]:
    """The sample names a /metrics endpoint serves now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def unknown(names_by_reader: dict[str, set[str]], known: set[str]) -> dict[str, set[str]]:
    return {w: names - known for w, names in names_by_reader.items() if names - known}


# --- the name parser, against hand-read expressions ------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum(retention_customers)", {"retention_customers"}),
        (
            'sum by (window) (retention_active_customers{window="1d"})',
            {"retention_active_customers"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(retention_batch_seconds_bucket[$__rate_interval])))",
            {"retention_batch_seconds_bucket"},
        ),
        (
            'sum by (offset) (a{cohort_period="$cohort_period"}) / sum by (offset) ('
            "b * on (instance, job, cohort_period, cohort) group_right () (0 * a + 1))",
            {"a", "b"},
        ),
        (
            'avg_over_time(x:y:ratio{period="day"}[7d] offset 1d) or '
            'avg_over_time(x:y:ratio{period="week"}[4w] offset 1w)',
            {"x:y:ratio"},
        ),
        ("a > bool 1e3 and ignoring (offset) b unless on(cohort) c", {"a", "b", "c"}),
        ("sum(rate(x_total[10m])) by (reason) / sum without (reason) (y)", {"x_total", "y"}),
        ('up{job=~"retention-exporter|retention-worker"} == 0', {"up"}),
        ("time() - max(retention_watermark_seconds)", {"retention_watermark_seconds"}),
        ('a{label="sum(b)", other=~"by|c"} * group_left (label) d', {"a", "d"}),
    ],
)
def test_metric_names_skip_functions_labels_and_keywords(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_alert_and_panel_reads_something() -> None:
    """An expression the parser finds no name in would pass the served check vacuously."""
    empty = [where for where, names in readers().items() if not names]
    assert not empty, empty


# --- against the real worker and exporter ----------------------------------------------


def invalid_records() -> list[bytes | tuple[bytes | None, bytes]]:
    """Records the worker dead-letters: retention_events_invalid_total has samples after."""
    return [
        b"{not json",
        json.dumps({"event_id": "bad-1", "type": "session", "ts": 1775000000000}).encode(),
    ]


@pytest.mark.integration
def test_every_name_read_is_served_recorded_or_builtin(
    pipeline: Callable[..., Pipeline],
) -> None:
    """Needs: installs and activity (customers, cohorts, churn, lifecycle, breakdowns),
    purchases and refunds (revenue, CLV, RFM; CLV also needs a complete month with a
    base at its start, February here), subscriptions (MRR, subscribers), NPS
    answers (NPS), customers lapsing and coming back (churned, win-back) and invalid
    records (events_invalid): the generated history has all of them.
    """
    worker_port = free_port()
    p = pipeline(extra_env={"RETENTION_WORKER_METRICS_PORT": str(worker_port)})
    p.produce(generate_history(seed=505, customers=150, days=45, start=date(2026, 1, 19)))
    p.produce(invalid_records())
    p.wait_until_consumed(timeout=120)

    wanted = readers()
    static = recorded() | PROMETHEUS_BUILTINS
    # The worker refreshes its lag gauge on its own schedule: poll until every name is
    # there or the deadline passes, then report what is missing.
    deadline = time.monotonic() + 30
    while True:
        known = static | served(worker_port) | served(p.exporter_port)
        missing = unknown(wanted, known)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, "names read but neither served, recorded nor built in:\n" + "\n".join(
        f"  {where}: {sorted(names)}" for where, names in sorted(missing.items())
    )
