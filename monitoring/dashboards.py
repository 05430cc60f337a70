"""Every dashboard of the mixin, in the order Grafana lists them."""

from __future__ import annotations

from monitoring import (
    dashboards_churn,
    dashboards_cohorts,
    dashboards_overview,
    dashboards_pipeline,
    dashboards_value,
)
from monitoring.board import Board

DASHBOARDS: tuple[Board, ...] = (
    dashboards_overview.BOARD,
    dashboards_cohorts.BOARD,
    dashboards_churn.BOARD,
    dashboards_value.BOARD,
    dashboards_pipeline.BOARD,
)
