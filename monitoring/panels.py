"""The panel vocabulary of the dashboards: one function per panel kind, with shared defaults.

Each function returns a grafana-foundation-sdk panel builder already pointed at the
provisioned Prometheus datasource. Conventions every dashboard follows: stat, table,
bar and pie panels run instant queries (the value now), time series run range
queries; tables and bar charts read their queries in table format.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as options
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.piechart import PieChartLegendValues, PieChartType
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from monitoring.config import DATASOURCE_TYPE, DATASOURCE_UID

DATASOURCE = models.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
PERCENT = "percentunit"
RATE_WINDOW = "$__rate_interval"  # Grafana's window for rate(): at least 4 scrapes

# Threshold steps: (lowest value of the step or None for "from minus infinity", colour).
Steps = tuple[tuple[float | None, str], ...]
GREEN_ONLY: Steps = ((None, "green"),)
# Value mappings: (value, text shown instead, colour).
Mappings = tuple[tuple[float, str, str], ...]

# What a dashboard holds: any panel builder.
PanelBuilder = Builder[models.Panel]
AnyPanel = (
    stat.Panel | timeseries.Panel | table.Panel | barchart.Panel | bargauge.Panel | piechart.Panel
)


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and the legend of its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Look:
    """What every panel kind shares: size on the 24-column grid, unit and colours."""

    width: int = 6
    height: int = 8
    unit: str = "short"
    description: str = ""
    decimals: int | None = None
    thresholds: Steps = GREEN_ONLY
    mappings: Mappings = ()


def _targets(
    queries: tuple[Query, ...], *, instant: bool, as_table: bool
) -> list[Builder[variants.Dataquery]]:
    """The panel's queries, lettered A, B, ... as Grafana names them."""
    targets: list[Builder[variants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
        )
        target = target.instant() if instant else target.range()
        if as_table:
            target = target.format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


def _dress(panel: AnyPanel, title: str, look: Look, color: models.FieldColorModeId) -> None:
    """Apply the title, grid size, unit, thresholds and colour mode shared by every kind."""
    panel.title(title).description(look.description).datasource(DATASOURCE)
    panel.span(look.width).height(look.height).unit(look.unit)
    panel.thresholds(
        builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=colour) for value, colour in look.thresholds])
    )
    panel.color_scheme(builders.FieldColor().mode(color))
    if look.mappings:
        panel.mappings(
            [
                models.ValueMap(
                    options={
                        f"{value:g}": models.ValueMappingResult(text=text, color=colour, index=i)
                    }
                )
                for i, (value, text, colour) in enumerate(look.mappings)
            ]
        )
    if look.decimals is not None:
        panel.decimals(look.decimals)


def _last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(options.LegendDisplayMode.LIST)
        .placement(options.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def stat_panel(title: str, *queries: Query, look: Look = Look()) -> stat.Panel:
    """One big number (the last value), coloured by the thresholds."""
    panel = stat.Panel()
    _dress(panel, title, look, models.FieldColorModeId.THRESHOLDS)
    panel.targets(_targets(queries, instant=True, as_table=False))
    return (
        panel.reduce_options(_last_value())
        .color_mode(options.BigValueColorMode.VALUE)
        .graph_mode(options.BigValueGraphMode.AREA)
        .text_mode(options.BigValueTextMode.AUTO)
        .justify_mode(options.BigValueJustifyMode.AUTO)
        .orientation(options.VizOrientation.AUTO)
    )


def timeseries_panel(title: str, *queries: Query, look: Look = Look()) -> timeseries.Panel:
    """Lines over the dashboard's time range, one per series."""
    panel = timeseries.Panel()
    _dress(panel, title, look, models.FieldColorModeId.PALETTE_CLASSIC)
    panel.targets(_targets(queries, instant=False, as_table=False))
    tooltip = (
        common.VizTooltipOptions()
        .mode(options.TooltipDisplayMode.MULTI)
        .sort(options.SortOrder.DESCENDING)
    )
    return panel.legend(_legend()).tooltip(tooltip)


def _pivot(rows: str, columns: str) -> list[models.DataTransformerConfig]:
    """Turn an instant query's series into a rows x columns matrix, newest row first."""
    return [
        models.DataTransformerConfig(
            id_val="groupingToMatrix",
            options={"rowField": rows, "columnField": columns, "valueField": "Value"},
        ),
        models.DataTransformerConfig(
            id_val="sortBy",
            options={"sort": [{"field": f"{rows}\\{columns}", "desc": True}]},
        ),
    ]


def _merge(queries: tuple[Query, ...]) -> list[models.DataTransformerConfig]:
    """Join the queries' table rows on their labels; name value columns after the legends.

    Instant table queries give Time, the labels and "Value" (one query) or "Value #A",
    "Value #B", ... (several).
    """
    names = (
        ["Value"]
        if len(queries) == 1
        else [f"Value #{chr(ord('A') + i)}" for i in range(len(queries))]
    )
    rename = {
        name: query.legend for name, query in zip(names, queries, strict=True) if query.legend
    }
    return [
        models.DataTransformerConfig(id_val="merge", options={}),
        models.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": {"Time": True}, "indexByName": {}, "renameByName": rename},
        ),
    ]


def table_panel(
    title: str, *queries: Query, look: Look = Look(), pivot: tuple[str, str] | None = None
) -> table.Panel:
    """A table of the series now; with pivot=(rows, columns) a heat-coloured matrix."""
    panel = table.Panel()
    _dress(panel, title, look, models.FieldColorModeId.THRESHOLDS)
    panel.targets(_targets(queries, instant=True, as_table=True))
    panel.show_header(True).cell_height(options.TableCellHeight.SM)
    if pivot:
        panel.cell_options(options.TableColoredBackgroundCellOptions())
        panel.align(options.FieldTextAlignment.AUTO)
        return panel.transformations(_pivot(*pivot))
    return panel.transformations(_merge(queries))


def barchart_panel(
    title: str,
    *queries: Query,
    x_field: str,
    look: Look = Look(),
    pivot: tuple[str, str] | None = None,
) -> barchart.Panel:
    """Bars along one label (x_field); with pivot=(x, series) one bar group per x value."""
    panel = barchart.Panel()
    _dress(panel, title, look, models.FieldColorModeId.PALETTE_CLASSIC)
    panel.targets(_targets(queries, instant=True, as_table=True))
    panel.transformations(_pivot(*pivot) if pivot else _merge(queries))
    return (
        panel.x_field(f"{pivot[0]}\\{pivot[1]}" if pivot else x_field)
        .orientation(options.VizOrientation.VERTICAL)
        .show_value(options.VisibilityMode.AUTO)
        .stacking(options.StackingMode.NONE)
        .legend(_legend())
    )


def bargauge_panel(title: str, *queries: Query, look: Look = Look()) -> bargauge.Panel:
    """Horizontal gauges, one per series: shares of a small set of groups."""
    panel = bargauge.Panel()
    _dress(panel, title, look, models.FieldColorModeId.PALETTE_CLASSIC)
    panel.targets(_targets(queries, instant=True, as_table=False))
    return (
        panel.reduce_options(_last_value())
        .orientation(options.VizOrientation.HORIZONTAL)
        .display_mode(options.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
    )


def piechart_panel(title: str, *queries: Query, look: Look = Look()) -> piechart.Panel:
    """A donut of the series' last values, with a legend table of the values."""
    panel = piechart.Panel()
    _dress(panel, title, look, models.FieldColorModeId.PALETTE_CLASSIC)
    panel.targets(_targets(queries, instant=True, as_table=False))
    legend = (
        piechart.PieChartLegendOptions()
        .display_mode(options.LegendDisplayMode.TABLE)
        .placement(options.LegendPlacement.RIGHT)
        .show_legend(True)
        .values([PieChartLegendValues.VALUE])
    )
    return panel.reduce_options(_last_value()).pie_type(PieChartType.DONUT).legend(legend)
