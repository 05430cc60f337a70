"""End to end: a churn spike produced to Kafka reaches an Alertmanager webhook.

Real Kafka, Redis, worker and exporter (tests/conftest.py), a real Prometheus with
the repo's config template and rules, and a real Alertmanager with the repo's
config; the webhook receiver is a tiny HTTP server in this test.

Time: churn is computed in event time, for the last complete day at the watermark.
The test plays a history of days, one day every DAY_SECONDS of wall clock, and
the rules are the real ones with their durations compressed by the same factor
(tests/stack_fixtures.Scale), so the churn baseline (7 days, offset 1 day) spans
a few seconds. With RETENTION_CHURN_WINDOW_DAYS=2 a customer whose last activity
was day a is lost on day a + 2, so making many customers go silent on day 10
makes day 12 a churn spike, which becomes visible when the watermark enters day 13.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_runner import Pipeline
from tests.services import free_port
from tests.stack_fixtures import (
    Scale,
    WebhookReceiver,
    query,
    start_alertmanager,
    start_prometheus,
    wait_for,
)

pytestmark = pytest.mark.integration

DAY_SECONDS = 4.0
CHURN_WINDOW = 2
REGULARS = 200  # long-time customers, active every day from day 0
REGULAR = frozenset(f"r{n:03d}" for n in range(REGULARS))
INSTALLS = 20  # new customers per day, active every day after
LAPSES = (10, 12, 9, 11, 10, 12, 9, 11, 10, 12, 9, 11)  # customers going silent per day
PREFILL_DAYS = range(0, 5)  # produced at once before Prometheus starts
STEADY_DAYS = range(5, 13)  # one day every DAY_SECONDS
SPIKE_LAPSE_DAY = 10  # 60 customers go silent after day 10 ...
SPIKE_LAPSES = 60
SPIKE_DAY = SPIKE_LAPSE_DAY + CHURN_WINDOW  # ... so they are lost on day 12
REVEAL_DAY = SPIKE_DAY + 1  # and the watermark entering day 13 shows it


class History:
    """The scripted customers, their events, and the churn they imply (an oracle)."""

    def __init__(self, day0: date, seed: int = 4) -> None:
        self.day0 = datetime(day0.year, day0.month, day0.day, tzinfo=UTC)
        self.rng = random.Random(seed)
        self.installed: dict[str, int] = dict.fromkeys(sorted(REGULAR), 0)
        self.silent_after: dict[str, int] = {}
        self.active: dict[str, set[int]] = {c: set() for c in self.installed}
        self.serial = 0

    def _event(self, customer: str, kind: str, day: int) -> dict[str, Any]:
        self.serial += 1
        at = self.day0 + timedelta(days=day, seconds=self.rng.randrange(3600, 82800))
        self.active[customer].add(day)
        return {
            "event_id": f"e{self.serial}",
            "customer_id": customer,
            "type": kind,
            "ts": int(at.timestamp() * 1000),
            "platform": "ios",
            "channel": "organic",
        }

    def day(self, d: int) -> list[dict[str, Any]]:
        """All events of day d; then choose who goes silent after it."""
        for n in range(INSTALLS if d > 0 else 0):
            c = f"i{d:02d}-{n:02d}"
            self.installed[c], self.active[c] = d, set()
        events = [
            self._event(c, "install" if first == d else "app_open", d)
            for c, first in self.installed.items()
            if first <= d and c not in self.silent_after
        ]
        count = SPIKE_LAPSES if d == SPIKE_LAPSE_DAY else LAPSES[d % len(LAPSES)]
        # Only long-time customers lapse, so every cohort's day-1 retention stays 100%
        # (RetentionDrop must stay quiet) and the spike is churn alone.
        old = sorted(
            c
            for c, first in self.installed.items()
            if (c in REGULAR or first <= d - 4) and c not in self.silent_after
        )
        for c in self.rng.sample(old, count):
            self.silent_after[c] = d
        self.rng.shuffle(events)
        return events

    def filler(self, d: int, n: int) -> list[dict[str, Any]]:
        """More activity on day d by customers already active that day (changes no churn)."""
        today = sorted(c for c, days in self.active.items() if d in days)
        return [self._event(c, "session", d) for c in self.rng.sample(today, n)]

    def base_end(self, t: int) -> set[str]:
        out = set()
        for c, days in self.active.items():
            seen = [a for a in days if a <= t]
            if seen and t - max(seen) < CHURN_WINDOW:
                out.add(c)
        return out

    def churn(self, d: int) -> tuple[int, int]:
        """(lost, start base) of day d, straight from the definition."""
        start, end = self.base_end(d - 1), self.base_end(d)
        return len(start - end), len(start)


def humanize_percentage(v: float) -> str:
    """Prometheus' humanizePercentage: %.4g of v * 100, then '%'."""
    return f"{v * 100:.4g}%"


def test_churn_spike_reaches_the_webhook_and_nothing_fires_before(
    pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    day0 = today - timedelta(days=today.weekday() + 28)  # a Monday four weeks ago
    history = History(day0)
    worker_port = free_port()
    p = pipeline(
        churn_window_days=CHURN_WINDOW,
        extra_env={"RETENTION_WORKER_METRICS_PORT": str(worker_port)},
    )
    webhook = WebhookReceiver()
    servers = []
    try:
        for d in PREFILL_DAYS:
            p.produce(history.day(d))
        p.wait_until_consumed(timeout=60)

        am = start_alertmanager(tmp_path / "alertmanager", webhook.url)
        servers.append(am)
        prom = start_prometheus(
            tmp_path / "prometheus",
            exporter_port=p.exporter_port,
            worker_port=worker_port,
            alertmanager_port=am.port,
            scale=Scale(day_seconds=DAY_SECONDS, min_for=6),
        )
        servers.append(prom)
        started = time.monotonic()

        def play(d: int, until: float) -> None:
            """Day d's events now, then a trickle of same-day activity every second."""
            p.produce(history.day(d))
            while time.monotonic() < until:
                p.check_alive()
                time.sleep(1)
                p.produce(history.filler(d, 5))

        # --- steady phase: eight days of ordinary churn ---------------------------------
        for i, d in enumerate(STEADY_DAYS, start=1):
            play(d, started + i * DAY_SECONDS)
        steady = time.monotonic() - started
        window = f"{int(steady) + 1}s"
        day_churn = 'period:retention_churn:ratio{period="day"}'
        # The steady phase did exercise the rule: daily churn changed day by day and
        # the baseline existed, yet nothing fired, and the webhook heard nothing.
        changes = query(prom, f"changes({day_churn}[{window}])")
        assert changes and float(changes[0]["value"][1]) >= 5, changes
        assert query(prom, 'period:retention_churn:ratio_baseline{period="day"}')
        assert query(prom, f'count_over_time(ALERTS{{alertstate="firing"}}[{window}])') == []
        assert query(prom, f'count_over_time(ALERTS{{alertname="ChurnRateSpike"}}[{window}])') == []
        assert list(webhook.alerts()) == []
        lost, base = history.churn(STEADY_DAYS[-1] - 1)  # the watermark is on day 12
        got = float(wait_for(prom, day_churn)[0]["value"][1])
        assert got == pytest.approx(lost / base), "exporter/rules disagree with the oracle"

        # --- the spike: the watermark enters day 13, day 12 lost 60 customers ----------
        spike_lost, spike_base = history.churn(SPIKE_DAY)
        assert spike_lost == SPIKE_LAPSES
        expected = spike_lost / spike_base
        revealed = time.monotonic()
        deadline = revealed + 45
        p.produce(history.day(REVEAL_DAY))
        firing: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not firing:
            time.sleep(1)
            p.produce(history.filler(REVEAL_DAY, 5))
            firing = [
                a
                for _, a in webhook.alerts()
                if a["status"] == "firing" and a["labels"]["alertname"] == "ChurnRateSpike"
            ]
        assert firing, (
            f"no ChurnRateSpike at the webhook {deadline - revealed:.0f}s after the spike; "
            f"churn {query(prom, day_churn)}, "
            f"baseline {query(prom, 'period:retention_churn:ratio_baseline')}, "
            f"alerts {query(prom, 'ALERTS')}"
        )
        alert = firing[0]
        assert alert["labels"] == {
            "alertname": "ChurnRateSpike",
            "period": "day",
            "severity": "warning",
            "team": "growth",
        }
        notes = alert["annotations"]
        assert notes["summary"].startswith(
            f"Churn of the last day is {humanize_percentage(expected)}, well above its baseline"
        )
        assert notes["description"].startswith(f"{SPIKE_LAPSES} customers of the base")
        assert (
            "/d/retention-churn/churn-and-lifecycle?var-period=day&viewPanel=" in notes["dashboard"]
        )
        assert notes["runbook"]
        got = float(query(prom, day_churn)[0]["value"][1])
        assert got == pytest.approx(expected)
        # Only the spike was ever reported.
        names = {a["labels"]["alertname"] for _, a in webhook.alerts()}
        assert names == {"ChurnRateSpike"}, names
        print(
            f"steady {steady:.1f}s; alert at the webhook "
            f"{time.monotonic() - revealed:.1f}s after the spike was produced "
            f"(churn {expected:.1%} of {spike_base})"
        )
    finally:
        for server in reversed(servers):
            server.stop()
        webhook.close()
