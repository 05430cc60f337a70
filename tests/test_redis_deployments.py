"""The tracker on the stack's other Redis deployments: its 3-master Redis Cluster and its
Sentinel service. A real worker and exporter are pointed at each by RETENTION_REDIS_URL
alone, fed a generated history with late and duplicate events, and every exported number
must equal the independent oracle's; `retention status` must name the deployment and
`retention report` read the same numbers from it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
import redis

from retention.stack.settings import StackSettings
from tests.cli_fixtures import cli_env, run_cli
from tests.history import generate_history
from tests.oracle import COMPARED, OracleSettings, compute, diff, flatten, key
from tests.pipeline_runner import Pipeline

pytestmark = pytest.mark.integration

STACK = StackSettings()
URLS = {"cluster": STACK.redis_cluster_url, "sentinel": STACK.redis_sentinel_url}


@pytest.fixture(params=sorted(URLS))
def deployment(request: pytest.FixtureRequest, stack: None) -> str:
    return str(request.param)


def test_worker_exporter_status_and_report_on_the_deployment(
    deployment: str, pipeline: Callable[..., Pipeline]
) -> None:
    p = pipeline(extra_env={"RETENTION_REDIS_URL": URLS[deployment]})
    events = generate_history(seed=23, customers=300, days=45, start=date(2026, 2, 2))
    p.produce(events)
    p.wait_until_consumed()
    expected = compute(events, OracleSettings())
    problems = ""

    def matching() -> bool:
        nonlocal problems
        problems = diff(expected, flatten(p.scrape_text(), COMPARED))
        return not problems

    p.wait(matching, lambda: f"the exporter to match the oracle: {problems}", 30, 0.5)
    customers = expected[key("retention_customers")]
    assert customers > 250

    state_is_where_the_url_says(deployment, p)
    status = run_cli(["status", "--json", "--sample", "0.5"], cli_env(p))
    assert status.returncode == 0, status.stdout + status.stderr
    found = {c["name"]: c for c in json.loads(status.stdout)["checks"]}["redis"]
    assert found["ok"] and found["data"]["customers"] == customers, found
    assert found["data"]["topology"] == deployment
    if deployment == "cluster":
        assert found["data"]["masters"] == 3
        assert "cluster of 3 masters" in found["detail"]
    else:
        assert found["data"]["primary"] == f"127.0.0.1:{STACK.redis_port}"

    report = run_cli(["report", "--json"], cli_env(p))
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["metrics"]["retention_customers"][0]["value"] == customers
    last_week = data["churn_history"]["week"][-1]  # read from Redis, not the exporter
    for name, field in (
        ("retention_base_start_customers", "base_start"),
        ("retention_base_end_customers", "base_end"),
        ("retention_new_customers", "new"),
        ("retention_lost_customers", "lost"),
    ):
        assert last_week[field] == expected[key(name, period="week")], (name, last_week)


def state_is_where_the_url_says(deployment: str, p: Pipeline) -> None:
    """On the cluster, every master holds some of the namespace (the 4 shards' hash tags
    fall in slots of all three); through the Sentinel, the stack's standalone Redis does."""
    ports = STACK.redis_cluster_ports if deployment == "cluster" else (STACK.redis_port,)
    for port in ports:
        node = redis.Redis(port=port, socket_timeout=5)
        held = sum(1 for _ in node.scan_iter(match=f"{p.ns}:*", count=1000))
        node.close()
        assert held > 0, f"no key of {p.ns} on 127.0.0.1:{port}"


def test_a_cluster_url_naming_a_standalone_server_stops_worker_and_exporter(
    stack: None, pipeline: Callable[..., Pipeline]
) -> None:
    """No wait mends a URL of the wrong form: exit code 2 and the reason, at once."""
    standalone = f"redis+cluster://127.0.0.1:{STACK.redis_port}"
    p = pipeline(start=False, extra_env={"RETENTION_REDIS_URL": standalone})
    worker = p.start_worker()
    assert worker.popen.wait(60) == 2
    worker.stopped = True
    log = worker.log.read_text()
    assert "Cluster mode is not enabled" in log and "RETENTION_REDIS_URL" in log, log
    exporter = run_cli(["exporter"], cli_env(p), timeout=60)
    assert exporter.returncode == 2, exporter.stdout + exporter.stderr
    assert "Cluster mode is not enabled" in exporter.stderr.replace("\n", " ")
