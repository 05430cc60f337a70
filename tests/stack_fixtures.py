"""Real Prometheus and Alertmanager processes for the dashboard and alert tests.

Each test starts its own Prometheus (and Alertmanager) on free loopback ports, with
configs rendered from the repo's own files by the local stack's renderer
(retention/stack/config.py), so what is tested is what ships. Only time is compressed:
`scaled_rules` rewrites the durations of prometheus/rules/*.yml so that one event-time
day of history takes a few wall-clock seconds (ranges, offsets and `for:` alike).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from retention.stack.config import alertmanager_yml, prometheus_yml
from retention.stack.settings import StackSettings
from tests.services import ROOT, free_port, tail
from tests.waiting import wait_until

PROMETHEUS_DIR = ROOT / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def seconds(duration: str) -> float:
    """A Prometheus duration ("7d", "1h30m") in seconds."""
    parts = DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)


@dataclass
class Scale:
    """Compress time: one day of rule time lasts `day_seconds` wall-clock seconds."""

    day_seconds: float
    min_range: float = 10.0  # rate() needs several scrapes in its window
    min_for: float = 2.0
    seen: dict[str, list[str]] = field(default_factory=dict)

    @property
    def factor(self) -> float:
        return 86400 / self.day_seconds

    def _fmt(self, value: float) -> str:
        return f"{max(1, math.ceil(value))}s"

    def range(self, d: str) -> str:
        return self._fmt(max(seconds(d) / self.factor, self.min_range))

    def offset(self, d: str) -> str:
        return self._fmt(seconds(d) / self.factor)

    def hold(self, d: str) -> str:
        return self._fmt(max(seconds(d) / self.factor, self.min_for))

    def rewrite_expr(self, expr: str) -> str:
        def note(kind: str, old: str, new: str) -> str:
            self.seen.setdefault(kind, []).append(f"{old}->{new}")
            return new

        expr = re.sub(r"\[(\w+)\]", lambda m: f"[{note('range', m[1], self.range(m[1]))}]", expr)
        return re.sub(
            r"\boffset\s+(\w+)", lambda m: f"offset {note('offset', m[1], self.offset(m[1]))}", expr
        )

    def rewrite(self, text: str) -> str:
        """A rule file with every range, offset and `for:` compressed."""
        doc = yaml.safe_load(text)
        for group in doc["groups"]:
            for rule in group["rules"]:
                rule["expr"] = self.rewrite_expr(rule["expr"])
                if "for" in rule:
                    new = self.hold(rule["for"])
                    self.seen.setdefault("for", []).append(f"{rule['for']}->{new}")
                    rule["for"] = new
        return str(yaml.safe_dump(doc, sort_keys=False, width=1000))


def scaled_rules(dest: Path, scale: Scale) -> list[Path]:
    """Copy prometheus/rules/*.yml into dest with compressed durations; promtool-checked."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(RULES_DIR.glob("*.yml")):
        target = dest / src.name
        target.write_text(scale.rewrite(src.read_text()))
        out.append(target)
    check = subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, out)], capture_output=True, text=True
    )
    assert check.returncode == 0, f"scaled rules invalid:\n{check.stdout}\n{check.stderr}"
    return out


class Server:
    """A server process in its own session, stopped by pid (never by name)."""

    def __init__(self, name: str, args: list[str], workdir: Path, port: int) -> None:
        self.name, self.port, self.log = name, port, workdir / f"{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                args,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited during start-up\n{tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_until(ready, lambda: f"{self.name} to be ready\n{tail(self.log)}", timeout=timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def start_prometheus(
    workdir: Path,
    *,
    exporter_port: int,
    worker_port: int,
    alertmanager_port: int,
    scale: Scale,
    interval: str = "1s",
) -> Server:
    """Prometheus with the repo's config template and (time-scaled) rules."""
    workdir.mkdir(parents=True, exist_ok=True)
    scaled_rules(workdir / "rules", scale)
    stack = StackSettings(
        scrape_interval=interval,
        exporter_port=exporter_port,
        worker_metrics_port=worker_port,
        alertmanager_port=alertmanager_port,
    )
    (workdir / "prometheus.yml").write_text(prometheus_yml(stack))
    port = free_port()
    server = Server(
        "prometheus",
        [
            PROMETHEUS_BIN,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir,
        port,
    )
    server.wait_ready()
    return server


def start_alertmanager(workdir: Path, webhook_url: str) -> Server:
    """Alertmanager with the local stack's config (webhook URL swapped), timers short."""
    text = alertmanager_yml(StackSettings(alertmanager_webhook_url=webhook_url))
    for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h")):
        text, n = re.subn(rf"^(\s+{key}: )\S+$", rf"\g<1>{value}", text, count=1, flags=re.M)
        assert n == 1, f"alertmanager.yml has no {key}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(text)
    port = free_port()
    server = Server(
        "alertmanager",
        [
            ALERTMANAGER_BIN,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        workdir,
        port,
    )
    server.wait_ready()
    return server


def query(prom: Server, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query; the result vector (or [] for no data). Raises on a query error."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"{prom.url}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"query {expr!r} failed: {exc.read().decode()}") from None
    assert body["status"] == "success", body
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def wait_for(prom: Server, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The query's result once it has data."""
    return wait_until(
        lambda: query(prom, expr),
        lambda: f"data for {expr!r}\n{tail(prom.log)}",
        timeout=timeout,
        interval=0.5,
    )


class WebhookReceiver:
    """A tiny HTTP server that records every Alertmanager webhook payload it gets."""

    def __init__(self) -> None:
        self.payloads: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.payloads.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> Iterator[tuple[float, dict[str, Any]]]:
        with self.lock:
            payloads = list(self.payloads)
        for at, payload in payloads:
            for alert in payload.get("alerts", []):
                yield at, alert

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
