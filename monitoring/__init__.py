"""The tracker's monitoring mixin: Grafana dashboards, recording rules and alerts.

One configuration (config.py) feeds all three, in the style of the Prometheus
monitoring mixins: dashboards are built with grafana-foundation-sdk (panels.py for the
shared panel kinds, one dashboards_*.py module per dashboard), rules.py holds the
recording rules and alerts.py the alerts, whose dashboard links are generated from
the dashboards themselves. `python -m monitoring` writes grafana/dashboards/*.json and
prometheus/rules/*.yml; `--check` verifies the checked-in files are fresh.
"""
