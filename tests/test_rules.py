"""Prometheus config, recording and alert rules: promtool checks and unit tests.

`promtool test rules prometheus/tests/*.test.yml` holds the behavioural tests (each
alert fires on a spike and stays quiet on noise and drift); this module runs them and
checks that every alert has them, plus the structure an on-call person relies on.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from retention.stack.config import prometheus_yml
from retention.stack.settings import StackSettings
from tests.promql_names import metric_names
from tests.stack_fixtures import PROMETHEUS_DIR, PROMTOOL, RULES_DIR, Scale, scaled_rules

ROOT = PROMETHEUS_DIR.parent
TESTS_DIR = PROMETHEUS_DIR / "tests"
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS = (
    "ChurnRateSpike",
    "RetentionDrop",
    "NoEventsIngested",
    "ConsumerLagHigh",
    "InvalidEventsRate",
    "RetentionTargetDown",
    "WorkerBackendDown",
    "DeadLetterTopicUnwritable",
)


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in rules, f"alert {rule['alert']} defined twice"
                    rules[rule["alert"]] = rule
    return rules


def unit_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in sorted(TESTS_DIR.glob("*.test.yml"))
        for case in yaml.safe_load(path.read_text())["tests"]
    ]


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_check_config_local_template(tmp_path: Path) -> None:
    """The template rendered as the local stack does, with the rules next to it."""
    stack = StackSettings()
    text = prometheus_yml(stack)
    (tmp_path / "prometheus.yml").write_text(text)
    (tmp_path / "rules").symlink_to(RULES_DIR)
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    # Both rule files were found through the relative glob and checked.
    for rule_file in RULES_DIR.glob("*.yml"):
        assert rule_file.name in done.stdout
    config = yaml.safe_load(text)
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert targets == {
        "retention-exporter": [f"127.0.0.1:{stack.exporter_port}"],
        "retention-worker": [f"127.0.0.1:{stack.worker_metrics_port}"],
    }
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{stack.alertmanager_port}"
    ]


def test_promtool_check_config_compose(tmp_path: Path) -> None:
    """The compose config, with its container rule path pointed at the repo's rules."""
    text = (PROMETHEUS_DIR / "prometheus.compose.yml").read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    (tmp_path / "prometheus.yml").write_text(
        text.replace("/etc/prometheus/rules/", f"{RULES_DIR}/")
    )
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    for rule_file in RULES_DIR.glob("*.yml"):
        assert rule_file.name in done.stdout
    # Same jobs as the local template, so the same rules and dashboards work in both.
    jobs = [c["job_name"] for c in yaml.safe_load(text)["scrape_configs"]]
    assert jobs == ["retention-exporter", "retention-worker"]


def test_amtool_check_config() -> None:
    done = subprocess.run(
        ["amtool", "check-config", str(PROMETHEUS_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text())
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert receiver["webhook_configs"][0]["url"] == "http://alert-log:5001/alerts"
    assert receiver["webhook_configs"][0]["send_resolved"] is True


def test_promtool_unit_tests_pass() -> None:
    files = sorted(p.name for p in TESTS_DIR.glob("*.test.yml"))
    assert files, "no promtool unit tests"
    done = promtool("test", "rules", *files, cwd=TESTS_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alert: one test where it fires (with labels and annotations) and quiet cases."""
    rules = alert_rules()
    assert set(rules) == set(ALERTS)
    cases = unit_tests()
    for name in ALERTS:
        fires = [
            case["name"]
            for case in cases
            for check in case.get("alert_rule_test", [])
            if check["alertname"] == name
            and check.get("exp_alerts")
            and all("exp_annotations" in a for a in check["exp_alerts"])
        ]
        pending_quiet = [
            case["name"]
            for case in cases
            for check in case.get("alert_rule_test", [])
            if check["alertname"] == name and check.get("exp_alerts") == []
        ]
        quiet = [
            case["name"]
            for case in cases
            for check in case.get("promql_expr_test", [])
            if re.search(rf'ALERTS\{{alertname="{name}"', check["expr"])
            and check.get("exp_samples") == []
            and "count_over_time" in check["expr"]
        ]
        assert fires, f"{name}: no unit test where it fires"
        assert pending_quiet, f"{name}: no check that it waits for its `for:`"
        assert len(quiet) >= 2, f"{name}: needs quiet cases (noise, drift): {quiet}"


def test_alerts_carry_what_on_call_needs() -> None:
    dashboards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    for name, rule in alert_rules().items():
        assert rule.get("for"), f"{name}: no `for:`, it would page on one bad scrape"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert set(notes) >= {"summary", "description", "runbook", "dashboard"}, name
        assert len(notes["description"]) > 80 and len(notes["runbook"]) > 80, name
        m = re.fullmatch(r"http://localhost:3000/d/([\w-]+)/([\w-]+)\?(.*)", notes["dashboard"])
        assert m, f"{name}: dashboard link {notes['dashboard']!r}"
        assert m[1] in dashboards, f"{name}: no dashboard with uid {m[1]}"
        variables = {v["name"] for v in dashboards[m[1]]["templating"]["list"]}
        for var in re.findall(r"var-(\w+)=", m[3]):
            assert var in variables, f"{name}: dashboard {m[1]} has no variable {var}"
        # The link opens one panel, and that panel reads a series the alert reads.
        (panel_id,) = re.findall(r"viewPanel=(\d+)", m[3])
        (panel,) = [p for p in dashboards[m[1]]["panels"] if p["id"] == int(panel_id)]
        shown = metric_names(" ".join(t["expr"] for t in panel["targets"]))
        assert shown & metric_names(rule["expr"]), f"{name}: panel {panel['title']!r} is unrelated"


def test_recording_rules_never_average_a_ratio() -> None:
    """Ratios are divided from summed counts; no avg()/sum() over an exported ratio."""
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                assert not re.search(r"\b(avg|sum)\b[^()]*\([^()]*retention_\w*_ratio\b", expr), (
                    f"{rule.get('record') or rule.get('alert')}: aggregates a ratio: {expr}"
                )


@pytest.mark.parametrize("day_seconds", [4.0, 8.0])
def test_scaled_rules_for_end_to_end_tests_are_valid(tmp_path: Path, day_seconds: float) -> None:
    """The e2e tests compress the real rules' durations; check that rewrite itself."""
    scale = Scale(day_seconds=day_seconds)
    files = scaled_rules(tmp_path, scale)
    text = "\n".join(f.read_text() for f in files)
    # One day of rule time = day_seconds: the churn baseline's 7d window and 1d offset.
    assert f"[{int(7 * day_seconds)}s] offset {int(day_seconds)}s" in text
    assert not re.search(r"\[\d+[mhdwy]\]|offset \d+[mhdwy]|for: \d+[mhdwy]", text)
    assert {"range", "offset", "for"} <= set(scale.seen)
