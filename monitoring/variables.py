"""Dashboard variables: label pickers filled from Prometheus, and fixed period choices."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.models import dashboard as models

from monitoring.config import PERIODS
from monitoring.panels import DATASOURCE

Variable = builders.QueryVariable | builders.CustomVariable


def label_picker(name: str, label: str, query: str) -> builders.QueryVariable:
    """A multi-select of a label's values, all selected by default.

    query is `label_values(selector, label)`.
    """
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-values"})
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def period_choice(name: str, label: str) -> builders.CustomVariable:
    """One of the periods (day, week, month), the first by default."""
    return (
        builders.CustomVariable(name)
        .label(label)
        .values(",".join(PERIODS))
        .include_all(False)
        .multi(False)
        .current(models.VariableOption(selected=True, text=PERIODS[0], value=PERIODS[0]))
        .options(
            [
                models.VariableOption(selected=index == 0, text=period, value=period)
                for index, period in enumerate(PERIODS)
            ]
        )
    )


def breakdown_picker(dimension: str, label: str) -> builders.QueryVariable:
    """The values of one breakdown dimension (platform, channel) the exporter reports."""
    return label_picker(
        dimension,
        label,
        f'label_values(retention_breakdown_active_customers{{dimension="{dimension}"}}, value)',
    )
