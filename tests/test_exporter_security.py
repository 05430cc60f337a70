"""The exporter as Prometheus meets it: the real Prometheus scrapes it over TLS with basic
auth (and fails with a wrong password or without TLS), and concurrent scrapes over real
Redis run one collection at a time."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from core.settings import Settings
from metrics.exporter import build_collector, build_registry, make_server, metrics_app
from metrics.snapshot import Snapshot
from metrics.webconfig import WebConfig
from tests.broker import scratch_name
from tests.pipeline_runner import Pipeline
from tests.services import REDIS_URL, free_port, tail
from tests.stack_fixtures import PROMETHEUS_BIN, Server, query, wait_for
from tests.tls_files import bcrypt_hash, make_certs
from tests.toy_events import ev
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

USER, PASSWORD = "prometheus", "correct horse battery staple"


def scrape_job(name: str, port: int, scheme: str, ca: Path, password: str) -> dict[str, object]:
    return {
        "job_name": name,
        "scheme": scheme,
        "tls_config": {"ca_file": str(ca)},
        "basic_auth": {"username": USER, "password": password},
        "static_configs": [{"targets": [f"localhost:{port}"]}],
    }


def test_prometheus_scrapes_over_tls_with_basic_auth(
    pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
    )
    p = pipeline(start=False)
    p.start_worker()
    # three customers (one of them active twice): the count Prometheus must receive
    p.produce(
        [
            ev("a1", "alice", "app_open", "2026-11-20"),
            ev("a2", "alice", "app_open", "2026-11-21"),
            ev("b1", "bob", "app_open", "2026-11-21"),
            ev("c1", "carol", "install", "2026-11-21"),
        ]
    )
    p.wait_until_consumed()
    url = f"https://localhost:{p.exporter_port}/metrics"
    context = ssl.create_default_context(cafile=str(certs.ca))
    password_manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    password_manager.add_password(None, url, USER, PASSWORD)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPBasicAuthHandler(password_manager),
    )

    def served() -> bool:
        try:
            with opener.open(url, timeout=5) as resp:
                return b"retention_customers" in resp.read()
        except OSError:
            return False

    p.start_exporter(env={"RETENTION_EXPORTER_WEB_CONFIG_FILE": str(web)}, ready=served)

    jobs = [
        scrape_job("right", p.exporter_port, "https", certs.ca, PASSWORD),
        scrape_job("wrong-password", p.exporter_port, "https", certs.ca, "guess"),
        scrape_job("plain-http", p.exporter_port, "http", certs.ca, PASSWORD),
    ]
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prom = Server(
        "prometheus",
        [
            PROMETHEUS_BIN,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path,
        port,
    )
    try:
        prom.wait_ready()
        (customers,) = wait_for(prom, 'retention_customers{job="right"}')
        assert float(customers["value"][1]) == 3

        def scrapes() -> dict[str, float]:
            found = query(prom, "count_over_time(up[1m])")
            return {r["metric"]["job"]: float(r["value"][1]) for r in found}

        wait_until(
            lambda: len(got := scrapes()) == 3 and min(got.values()) >= 3,
            lambda: f"three scrapes of each job\n{tail(prom.log)}",
            timeout=30,
        )
        # the best of each job's scrapes so far: one slow scrape on a busy machine may
        # time out, but a refused one never succeeds
        best = {
            r["metric"]["job"]: float(r["value"][1]) for r in query(prom, "max_over_time(up[1m])")
        }
        assert best == {"right": 1.0, "wrong-password": 0.0, "plain-http": 0.0}
        assert query(prom, 'retention_customers{job!="right"}') == []
        targets = _targets(prom)
        assert "401" in targets["wrong-password"], targets
    finally:
        prom.stop()


def _targets(prom: Server) -> dict[str, str]:
    """The last scrape error of each job, as Prometheus reports it."""
    with urllib.request.urlopen(f"{prom.url}/api/v1/targets", timeout=10) as resp:
        active = json.load(resp)["data"]["activeTargets"]
    return {t["labels"]["job"]: t["lastError"] for t in active}


def test_concurrent_scrapes_run_one_collection_at_a_time(stack: None) -> None:
    """Twelve scrapes at once over real Redis: never two collections side by side, fewer
    collections than scrapes, and each scrape gets a whole, identical exposition."""
    settings = Settings(
        redis_url=REDIS_URL,
        namespace=scratch_name("x")[:32],
        exporter_port=free_port(),
        exporter_threads=12,
    )
    collector = build_collector(settings)
    running, most, collections = 0, 0, 0
    lock = threading.Lock()
    read = collector.reader.read

    def counted_read() -> Snapshot:
        nonlocal running, most, collections
        with lock:
            running += 1
            collections += 1
            most = max(most, running)
        try:
            time.sleep(0.3)  # a slow Redis: the window in which scrapes pile up
            return read()
        finally:
            with lock:
                running -= 1

    collector.reader.read = counted_read  # type: ignore[method-assign]
    app = metrics_app(collector, build_registry(settings, collector))
    server = make_server(settings, app, WebConfig())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.exporter_port}/metrics"

    def scrape(_: int) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bytes(resp.read())

    try:
        with ThreadPoolExecutor(12) as pool:
            bodies = list(pool.map(scrape, range(12)))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert most == 1
    assert 1 <= collections <= 3, collections
    assert len(set(bodies)) == 1 and b"\nretention_customers 0.0\n" in bodies[0]
    assert collector.reader.redis.connection_pool.max_connections == 4
