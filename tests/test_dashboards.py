"""Grafana dashboards: valid JSON built by the monitoring mixin, and every panel query
returns data from a real Prometheus that scraped the real worker and exporter after
events went through Kafka.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.config import DATASOURCE_TYPE, DATASOURCE_UID
from tests.history import generate_history
from tests.pipeline_runner import Pipeline
from tests.services import free_port
from tests.stack_fixtures import Scale, Server, query, start_prometheus, wait_for

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
# Grafana's own variables, replaced by Grafana, not defined in the dashboard.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variable_query(variable: dict[str, Any]) -> str:
    """The PromQL of a query variable (Grafana stores it as {"query": ..., "refId": ...})."""
    return str(variable["query"]["query"])


def test_checked_in_dashboards_and_rules_are_a_fresh_build() -> None:
    """grafana/dashboards/*.json and prometheus/rules/*.yml are what the mixin generates."""
    done = subprocess.run(
        [sys.executable, "-m", "monitoring", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, "run `python -m monitoring`:\n" + done.stderr


def test_the_five_dashboards_exist() -> None:
    titles = {b["title"] for b in dashboards().values()}
    assert titles == {"Retention overview", "Cohorts", "Churn & lifecycle", "Value", "Pipeline"}


def test_dashboard_json_is_valid() -> None:
    boards = dashboards()
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids), f"duplicate dashboard uids: {uids}"
    for name, board in boards.items():
        assert board["uid"] == Path(name).stem, f"{name}: file name != uid"
        assert board["schemaVersion"] >= 36 and board["tags"] == ["retention"]
        variables = {v["name"]: v for v in board["templating"]["list"]}
        used: set[str] = set()
        ids = [p["id"] for p in panels(board)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids {ids}"
        cells: dict[tuple[int, int], str] = {}
        for panel in panels(board):
            where = f"{name} / {panel['title']!r}"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], f"{where}: no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), f"{where}: duplicate refIds"
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, where
                assert target["expr"].strip(), where
                for m in VAR.finditer(target["expr"]):
                    var = m[1] or m[2]
                    assert var in variables or var in BUILTINS, f"{where}: undefined ${var}"
                    used.add(var)
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, where
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = panel["title"]
        for var in variables.values():
            assert var["name"] in used, f"{name}: variable {var['name']} is used by no panel"
            if var["type"] == "query":
                assert var["datasource"] == DATASOURCE, f"{name}: variable {var['name']}"
            if var["type"] == "custom":
                options = var["query"].split(",")
                assert var["current"]["value"] in options, f"{name}: {var['name']} default"


def test_provisioning_points_at_the_datasource_and_dashboards() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasources["datasources"]
    assert {"uid": ds["uid"], "type": ds["type"]} == DATASOURCE
    assert ds["url"] == "http://prometheus:9090"  # the compose service
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "retention.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_variable_queries_are_label_values_of_breakdowns() -> None:
    board = dashboards()["retention-overview.json"]
    by_name = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("platform", "channel"):
        assert variable_query(by_name[name]) == (
            f'label_values(retention_breakdown_active_customers{{dimension="{name}"}}, value)'
        )
        assert by_name[name]["includeAll"] and by_name[name]["allValue"] == ".*"


# --- every panel against real data ---------------------------------------------------------


def label_values(prom: Server, definition: str) -> list[str]:
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition.strip())
    assert m, f"unsupported variable query {definition!r}"
    selector, label = m[1], m[2]
    url = f"{prom.url}/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(url, timeout=10) as resp:
        series = json.load(resp)["data"]
    return sorted({s[label] for s in series if label in s})


def substitute(expr: str, values: dict[str, str]) -> str:
    return VAR.sub(lambda m: values[m[1] or m[2]], expr)


def invalid_records() -> list[bytes | tuple[bytes | None, bytes]]:
    """A few records the worker must dead-letter, so the invalid-event panels have data."""
    return [
        b"{not json",
        json.dumps({"event_id": "bad-1", "type": "session", "ts": 1775000000000}).encode(),
        json.dumps(
            {"event_id": "bad-2", "customer_id": "x", "type": "sesion", "ts": 1775000000000}
        ).encode(),
    ]


@pytest.mark.integration
def test_every_panel_query_returns_data(pipeline: Callable[..., Pipeline], tmp_path: Path) -> None:
    worker_port = free_port()
    p = pipeline(extra_env={"RETENTION_WORKER_METRICS_PORT": str(worker_port)})
    prom = start_prometheus(
        tmp_path / "prometheus",
        exporter_port=p.exporter_port,
        worker_port=worker_port,
        alertmanager_port=free_port(),  # nothing listens: alerts are not under test here
        scale=Scale(day_seconds=4),
    )
    try:
        history = generate_history(seed=404, customers=400, days=75, start=date(2026, 2, 2))
        p.produce(history)
        p.produce(invalid_records())
        p.wait_until_consumed(timeout=120)
        # Both targets scraped, and the churn baseline (a 1-day offset = 4 s here) exists.
        wait_for(prom, 'up{job="retention-worker"} == 1')
        wait_for(prom, 'up{job="retention-exporter"} == 1')
        wait_for(prom, 'period:retention_churn:ratio_baseline{period="day"}', timeout=30)

        failures: list[tuple[str, str, str]] = []
        for name, board in dashboards().items():
            values = dict(BUILTINS)
            for var in board["templating"]["list"]:
                if var["type"] == "custom":
                    values[var["name"]] = var["current"]["value"]
                else:
                    found = label_values(prom, variable_query(var))
                    if not found:
                        failures.append((name, f"variable ${var['name']}", variable_query(var)))
                    values[var["name"]] = "|".join(found) or ".*"
            for panel in panels(board):
                for target in panel["targets"]:
                    expr = substitute(target["expr"], values)
                    where = f"{name} / {panel['title']} / {target['refId']}"
                    try:
                        result = query(prom, expr)
                    except AssertionError as exc:
                        failures.append((where, "query error", f"{expr}: {exc}"))
                        continue
                    if not result:
                        failures.append((where, "no data", expr))
        if failures:
            lines = [f"{len(failures)} panel queries / variables returned nothing:"]
            lines += ["  " + " | ".join(f) for f in failures]
            pytest.fail("\n".join(lines), pytrace=False)
    finally:
        prom.stop()
