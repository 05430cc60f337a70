"""The one configuration of the monitoring mixin: dashboards, selectors and thresholds.

The dashboards, the recording rules and the alert rules all read these values, so an
alert's threshold, the panel that colours the same value red and the alert's link to
its dashboard cannot drift apart. Change a value here and regenerate
(`python -m monitoring`); the promtool tests in prometheus/tests pin the alert
thresholds and must change with them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Grafana as docker-compose.yml serves it; the alert annotations link here.
GRAFANA_URL = "http://localhost:3000"
# The provisioned Prometheus datasource (grafana/provisioning/datasources).
DATASOURCE_TYPE = "prometheus"
DATASOURCE_UID = "prometheus"
# Every dashboard carries this tag; the dashboards' link bar lists the tagged ones.
DASHBOARD_TAG = "retention"

# Scrape jobs of prometheus/prometheus.yml and prometheus/prometheus.compose.yml.
EXPORTER_JOB = "retention-exporter"
WORKER_JOB = "retention-worker"
TARGETS_SELECTOR = f'job=~"{EXPORTER_JOB}|{WORKER_JOB}"'

# The periods the exporter reports churn and cohorts for (the `period` and
# `cohort_period` label values).
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class DashboardRef:
    """Where a dashboard lives in Grafana: what the alert links are built from."""

    uid: str
    slug: str  # the URL path after /d/<uid>/
    title: str


OVERVIEW = DashboardRef("retention-overview", "retention-overview", "Retention overview")
COHORTS = DashboardRef("retention-cohorts", "cohorts", "Cohorts")
CHURN = DashboardRef("retention-churn", "churn-and-lifecycle", "Churn & lifecycle")
VALUE = DashboardRef("retention-value", "value", "Value")
PIPELINE = DashboardRef("retention-pipeline", "pipeline", "Pipeline")


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds; the matching dashboard panels turn red at the same values."""

    # ChurnRateSpike: churn above factor x its trailing baseline, above the floor,
    # with at least min_lost customers lost.
    churn_spike_factor: float = 1.5
    churn_floor: float = 0.02
    churn_min_lost: int = 10
    # RetentionDrop: the newest cohort's early retention below factor x the
    # baseline, for a cohort of at least min_cohort customers.
    retention_drop_factor: float = 0.75
    retention_drop_min_cohort: int = 20
    # ConsumerLagHigh: records behind, summed over partitions.
    consumer_lag_max: int = 10000
    # InvalidEventsRate: share of consumed records dead-lettered, and a minimal
    # absolute rate (events/s) so that a trickle of traffic does not page.
    invalid_share_max: float = 0.05
    invalid_rate_min: float = 0.01


THRESHOLDS = Thresholds()
