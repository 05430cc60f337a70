"""A dashboard as data (its place in Grafana, panels in layout order, variables) and its JSON.

Panels are laid out left to right, top to bottom, in rows of 24 grid units (a row's
widths must add up to 24, or the next panel would stick out), and numbered 1, 2, ...
in that order: the numbers are the `viewPanel` ids the alert
links open, so they are assigned here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from monitoring.config import DASHBOARD_TAG, DashboardRef
from monitoring.panels import PanelBuilder
from monitoring.variables import Variable


@dataclass(frozen=True)
class Board:
    """One dashboard: where it lives, what it shows and the time range it opens on."""

    ref: DashboardRef
    description: str
    panels: Sequence[PanelBuilder]
    variables: Sequence[Variable] = ()
    time_from: str = "now-24h"


def _links() -> builders.DashboardLink:
    """A link bar to every dashboard with the same tag, keeping the time range."""
    return (
        builders.DashboardLink("Retention")
        .type(models.DashboardLinkType.DASHBOARDS)
        .tags([DASHBOARD_TAG])
        .as_dropdown(False)
        .include_vars(False)
        .keep_time(True)
        .icon("external link")
        .target_blank(False)
        .tooltip("")
        .url("")
    )


def _grafana_annotations() -> builders.AnnotationQuery:
    """Grafana's own annotations and alert markers, hidden from the toolbar."""
    return (
        builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )


def build(board: Board) -> models.Dashboard:
    """The dashboard model, panels numbered and placed on the grid."""
    dashboard = (
        builders.Dashboard(board.ref.title)
        .uid(board.ref.uid)
        .description(board.description)
        .tags([DASHBOARD_TAG])
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time(board.time_from, "now")
        .timezone("")
        .version(1)
        .link(_links())
        .annotation(_grafana_annotations())
        .variables(list(board.variables))
    )
    for panel in board.panels:
        dashboard.with_panel(panel)
    model = dashboard.build()
    for number, placed in enumerate(model.panels or [], start=1):
        assert isinstance(placed, models.Panel) and placed.grid_pos is not None
        if placed.grid_pos.x + placed.grid_pos.w > 24:
            raise ValueError(f"{board.ref.uid}: panel {placed.title!r} sticks out of its row")
        placed.id_val = number
    return model


def to_json(board: Board) -> dict[str, Any]:
    """The dashboard as the plain JSON Grafana's file provisioning reads."""
    data: dict[str, Any] = json.loads(JSONEncoder().encode(build(board)))
    return data


def panel_number(board: Board, title: str) -> int:
    """The id of the panel with this title; a typo in an alert link fails the build."""
    numbers = [p.id_val for p in build(board).panels or [] if getattr(p, "title", None) == title]
    if len(numbers) != 1:
        raise KeyError(f"{board.ref.uid}: {len(numbers)} panels titled {title!r}")
    number = numbers[0]
    assert number is not None
    return int(number)
