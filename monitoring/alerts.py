"""Alert rules: each with summary, description, runbook and a link to the panel to open.

Thresholds come from monitoring/config.py, and the `dashboard` annotation is built
from the dashboard's uid and slug and the number of the panel that shows what the
alert compares, so the link cannot point at a dashboard or panel that does not exist.
The promtool tests (prometheus/tests/*.test.yml) pin every threshold and annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from monitoring import dashboards_churn, dashboards_cohorts, dashboards_pipeline, rules
from monitoring.board import Board, panel_number
from monitoring.config import GRAFANA_URL, TARGETS_SELECTOR, THRESHOLDS


@dataclass(frozen=True)
class Alert:
    """One alerting rule and what the person it pages needs to act."""

    name: str
    expr: str
    hold: int  # minutes the condition must hold before the alert fires (`for:`)
    severity: str
    team: str
    summary: str
    description: str
    runbook: str
    dashboard: str


def duration(minutes: int) -> str:
    """A PromQL / rule-file duration: 30m, 1h."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def spoken(minutes: int) -> str:
    """The same duration for people: 30 minutes, 1 hour."""
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


def panel_link(board: Board, panel_title: str, **variables: str) -> str:
    """The Grafana URL that opens one panel of a dashboard, with its variables set."""
    query = {f"var-{name}": value for name, value in variables.items()}
    query["viewPanel"] = str(panel_number(board, panel_title))
    # Alert templates ({{$labels.period}}) must reach Prometheus unescaped.
    encoded = urlencode(query, safe="{}$", quote_via=quote)
    return f"{GRAFANA_URL}/d/{board.ref.uid}/{board.ref.slug}?{encoded}"


def recorded_value(series: str, label: str, percent: bool = False) -> str:
    """A template that prints a recorded series for the alert's own label value."""
    shown = "value | humanizePercentage" if percent else "value"
    return (
        f"{{{{ with printf \"{series}{{{label}='%s'}}\" $labels.{label} | query }}}}"
        f"{{{{ . | first | {shown} }}}}{{{{ end }}}}"
    )


def business_alerts() -> list[Alert]:
    """Alerts on what the customers do: churn and early retention."""
    # Churn well above its own trailing baseline, above an absolute floor, with
    # enough customers lost to matter. A slow drift moves the baseline along with
    # it and stays quiet; a jump does not.
    hold = 30
    churn_spike = Alert(
        "ChurnRateSpike",
        f"{rules.CHURN} > {THRESHOLDS.churn_spike_factor:g} * {rules.CHURN_BASELINE}\n"
        f"  and {rules.CHURN} > {THRESHOLDS.churn_floor:g}\n"
        f"  and {rules.LOST} >= {THRESHOLDS.churn_min_lost}\n",
        hold,
        "warning",
        "growth",
        summary="Churn of the last {{ $labels.period }} is {{ $value | humanizePercentage }}, "
        "well above its baseline of "
        f"{recorded_value(rules.CHURN_BASELINE, 'period', percent=True)}.",
        description=f"{recorded_value(rules.LOST, 'period')} customers of the base at the "
        "start of the last complete {{ $labels.period }} were no longer in the base at its "
        "end (churn = lost / start base, {{ $value | humanizePercentage }}). That is more "
        f"than {THRESHOLDS.churn_spike_factor:g} times the trailing baseline (mean of the "
        "previous 7 days, or 4 weeks for weekly churn) and above the "
        f"{THRESHOLDS.churn_floor:.0%} floor, and "
        f"has been for {spoken(hold)}.",
        runbook="1) Open the dashboard and see whether the lost customers are new ones "
        "(quick churn) or long-time ones, and which platform/channel they come from. 2) On "
        "the Pipeline dashboard check that the watermark did not jump ahead (a far-future "
        "event makes an unfinished period look complete) and that no invalid-event spike "
        "is hiding activity. 3) Look for a release, outage, price or campaign change on "
        "that {{ $labels.period }}, and for bulk uninstall or subscription_cancel imports "
        "(they churn customers explicitly).",
        dashboard=panel_link(
            dashboards_churn.BOARD,
            dashboards_churn.CHURN_VS_BASELINE,
            period="{{$labels.period}}",
        ),
    )
    # The newest cohort whose offset-1 period is complete retained clearly fewer
    # customers than the older exported cohorts did (pooled, size-weighted).
    hold = 60
    retention_drop = Alert(
        "RetentionDrop",
        f"{rules.EARLY_RETENTION_NEWEST}\n"
        f"    < {THRESHOLDS.retention_drop_factor:g} * {rules.EARLY_RETENTION_BASELINE}\n"
        f"  and {rules.NEWEST_COHORT_SIZE} >= {THRESHOLDS.retention_drop_min_cohort}\n",
        hold,
        "warning",
        "growth",
        summary="Early retention of the newest {{ $labels.cohort_period }} cohort fell to "
        "{{ $value | humanizePercentage }}, below "
        f"{THRESHOLDS.retention_drop_factor:.0%} of its "
        f"baseline of {recorded_value(rules.EARLY_RETENTION_BASELINE, 'cohort_period', True)}.",
        description=f"Of the {recorded_value(rules.NEWEST_COHORT_SIZE, 'cohort_period')} "
        "customers of the newest {{ $labels.cohort_period }} cohort with a complete offset-1 "
        "period, {{ $value | humanizePercentage }} came back in the following "
        "{{ $labels.cohort_period }}; the older exported cohorts averaged the baseline above. "
        f"Sustained for {spoken(hold)}.",
        runbook="1) On the Cohorts dashboard compare the newest cohort's row with the ones "
        "before it, and its size: a campaign can bring many low-intent installs. 2) Check "
        "onboarding changes, releases and crashes around that cohort's first "
        "{{ $labels.cohort_period }}. 3) On the Pipeline dashboard rule out missing activity "
        "events (invalid-event spike, a producer that stopped sending app_open/session).",
        dashboard=panel_link(
            dashboards_cohorts.BOARD,
            dashboards_cohorts.EARLY_RETENTION,
            cohort_period="{{$labels.cohort_period}}",
        ),
    )
    return [churn_spike, retention_drop]


def _pipeline_link(panel_title: str) -> str:
    return panel_link(dashboards_pipeline.BOARD, panel_title)


def pipeline_alerts() -> list[Alert]:
    """Alerts on the tracker itself: ingestion, lag, invalid events, targets, backends."""
    window = 10  # minutes of traffic a rate is taken over
    quiet_hold, lag_hold, invalid_hold, down_hold = 10, 10, 15, 5
    consumed_rate = f"sum(rate(retention_consumed_events_total[{duration(window)}]))"
    invalid_rate = f"sum(rate(retention_events_invalid_total[{duration(window)}]))"
    return [
        Alert(
            "NoEventsIngested",
            f"{consumed_rate} == 0",
            quiet_hold,
            "critical",
            "data",
            summary="The retention worker has consumed no events for "
            f"{spoken(window + quiet_hold)}.",
            description=f"No record arrived on the events topic in the last {spoken(window)}, "
            f"and this has held for another {spoken(quiet_hold)}. Retention, churn and "
            "active-customer numbers are frozen at the current watermark.",
            runbook="1) Check the producers (app backend, shop, CDP destination): are they "
            "still writing to the events topic, with the right topic name and credentials? "
            "2) Check the worker log and the Kafka broker. 3) Producers that only send in "
            "bursts (nightly imports) need a longer window here.",
            dashboard=_pipeline_link(dashboards_pipeline.THROUGHPUT),
        ),
        Alert(
            "ConsumerLagHigh",
            f"sum(retention_consumer_lag) > {THRESHOLDS.consumer_lag_max}",
            lag_hold,
            "warning",
            "data",
            summary="Retention worker is {{ $value }} events behind the events topic.",
            description="The consumer group has {{ $value }} records not yet processed (sum "
            "over partitions, highwater minus position) and has had more than "
            f"{THRESHOLDS.consumer_lag_max} for {spoken(lag_hold)}. Metrics lag behind reality "
            "by that much.",
            runbook="1) On the Pipeline dashboard compare consumed events/s with produced "
            "events: a burst or backfill drains by itself; a steady climb does not. 2) Check "
            "batch and Redis latency (slow Redis, memory pressure, evictions). 3) Add worker "
            "replicas (up to the number of partitions) or raise RETENTION_BATCH_MAX_EVENTS.",
            dashboard=_pipeline_link(dashboards_pipeline.LAG_BY_PARTITION),
        ),
        Alert(
            "InvalidEventsRate",
            f"{invalid_rate}\n"
            f"    / {consumed_rate} > {THRESHOLDS.invalid_share_max:g}\n"
            f"  and {invalid_rate} > {THRESHOLDS.invalid_rate_min:g}\n",
            invalid_hold,
            "warning",
            "data",
            summary="{{ $value | humanizePercentage }} of incoming events are invalid.",
            description=f"Over the last {spoken(window)} {{{{ $value | humanizePercentage }}}} "
            "of the consumed records were rejected to the dead-letter topic (threshold "
            f"{THRESHOLDS.invalid_share_max:.0%}), for {spoken(invalid_hold)}. Those events "
            "are not counted in any metric.",
            runbook="1) The Pipeline dashboard splits invalid events by reason "
            "(malformed_json, missing_field, bad_timestamp, unknown_type, ...). 2) Read a few "
            "records of the dead-letter topic: each carries the reason, a detail and the "
            "original bytes. 3) A new event name from a producer needs RETENTION_CUSTOM_TYPES "
            "or an event-name mapping; fix the producer or the config, then replay the "
            "dead-letter records.",
            dashboard=_pipeline_link(dashboards_pipeline.INVALID_BY_REASON),
        ),
        Alert(
            "RetentionTargetDown",
            f"up{{{TARGETS_SELECTOR}}} == 0",
            down_hold,
            "critical",
            "data",
            summary="{{ $labels.job }} on {{ $labels.instance }} is down.",
            description="Prometheus could not scrape {{ $labels.job }} at "
            f"{{{{ $labels.instance }}}} for {spoken(down_hold)}. Without the exporter there "
            "are no retention metrics; without the worker's metrics the lag and no-events "
            "alerts cannot fire.",
            runbook="1) Check the process or container (`docker compose ps`, its log). 2) The "
            "exporter needs Redis; the worker needs Kafka and Redis. 3) Check that the port "
            "in the scrape config matches RETENTION_EXPORTER_PORT / "
            "RETENTION_WORKER_METRICS_PORT.",
            dashboard=_pipeline_link(dashboards_pipeline.TARGETS_UP),
        ),
        *backend_alerts(),
    ]


def backend_alerts() -> list[Alert]:
    """The worker's own view of its backends: retention_backend_up is 0 while it retries.

    A restart of Redis or the broker takes seconds; minutes of retrying means the
    backend is really gone.
    """
    hold = 5
    return [
        Alert(
            "WorkerBackendDown",
            'retention_backend_up{backend=~"redis|kafka"} == 0',
            hold,
            "critical",
            "data",
            summary="The retention worker on {{ $labels.instance }} cannot reach "
            "{{ $labels.backend }}.",
            description="The worker's operations against {{ $labels.backend }} have been "
            f"failing for {spoken(hold)} and it keeps retrying them "
            "(retention_backend_retries_total counts the attempts). Until "
            "{{ $labels.backend }} answers no new batch is applied: nothing is lost, but lag "
            "grows and the retention metrics stay where they are.",
            runbook="1) The worker log names the failing operation and its error. 2) Redis: "
            'is it running (`redis-cli ping`)? "OOM command not allowed" means it is full '
            "(maxmemory-policy noeviction refuses writes rather than drop customer state): "
            "raise maxmemory; a full disk stops the append-only file. 3) Kafka: is the broker "
            "up and is RETENTION_KAFKA_BOOTSTRAP reachable from the worker? The worker resumes "
            "by itself once the backend answers; watch the lag drain on the Pipeline "
            "dashboard.",
            dashboard=_pipeline_link(dashboards_pipeline.BACKENDS_UP),
        ),
        # Invalid records are never dropped: the worker stays at its position in the
        # events topic until the dead-letter topic has acknowledged them.
        Alert(
            "DeadLetterTopicUnwritable",
            'retention_backend_up{backend="dead_letter"} == 0',
            hold,
            "critical",
            "data",
            summary="The retention worker on {{ $labels.instance }} cannot write to the "
            "dead-letter topic; ingestion is held.",
            description="Writing invalid records to the dead-letter topic has been failing "
            f"for {spoken(hold)}, and the worker keeps retrying (retention_backend_retries_total). "
            "It holds its position in the events topic until the write succeeds: no event is "
            "lost or skipped, but none is processed, lag grows and the retention metrics "
            "stay where they are.",
            runbook="1) The worker log has the producer error. 2) Check the topic "
            "(RETENTION_DLQ_TOPIC, default events.dlq) with `kafka-topics.sh --describe`: "
            "does it exist (or may the broker auto-create it), are its partitions led, do "
            "ACLs let the worker write, is its max.message.bytes enough for the original "
            "record plus the reason? 3) If WorkerBackendDown fires for kafka too, the broker "
            "itself is the problem. The worker resumes by itself once a write succeeds.",
            dashboard=_pipeline_link(dashboards_pipeline.BACKENDS_UP),
        ),
    ]


def _rule(alert: Alert) -> dict[str, object]:
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": duration(alert.hold),
        "labels": {"severity": alert.severity, "team": alert.team},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "runbook": alert.runbook,
            "dashboard": alert.dashboard,
        },
    }


def alert_groups() -> dict[str, object]:
    """The alert rules as a Prometheus rule file."""
    return {
        "groups": [
            {"name": "retention-business", "rules": [_rule(a) for a in business_alerts()]},
            {"name": "retention-pipeline", "rules": [_rule(a) for a in pipeline_alerts()]},
        ]
    }
