"""Rich renderables for a Report: colour-graded cohort tables, curves, churn, the rest."""

from __future__ import annotations

from collections.abc import Iterable

from rich.color import Color
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.style import Style
from rich.table import Table
from rich.text import Text

from retention.curve import CurvePoint
from retention.report import PERIOD_ORDER, CohortRow, Report, is_percent
from retention.scrape import Family

BAR_WIDTH = 30
MAX_OFFSETS = 13
RUNNING_STYLE = Style(color="grey50", italic=True)  # a cohort cell whose period runs


def render(report: Report, periods: Iterable[str]) -> RenderableType:
    wanted = [p for p in periods if p in PERIOD_ORDER]
    parts: list[RenderableType] = [header(report)]
    for name, by_period in report.cohorts.items():
        if not is_percent(name):
            continue
        for period in wanted:
            if by_period.get(period):
                parts.append(cohort_table(report, name, period, by_period[period]))
    for name, curve_sets in report.curves.items():
        shown = {p: c for p, c in curve_sets.items() if p in wanted and c}
        if shown:
            parts.append(curves(report, name, shown))
    if report.by_period:
        parts.append(period_table("Churn and customer retention rate", report.by_period))
    if report.churn_history:
        parts.append(history_table(report))
    for family in report.by_period_state:
        parts.append(state_table(family))
    for period in wanted:
        table = timeline(report.timelines, period)
        if table is not None:
            parts.append(table)
    for dimension in sorted(
        {s.labels["dimension"] for f in report.by_dimension for s in f.samples}
    ):
        parts.append(dimension_table(report.by_dimension, dimension))
    for family in report.breakdowns:
        if family.name != "retention_active_customers":  # already in the header
            parts.append(breakdown(family))
    if report.other:
        parts.append(other(report.other))
    parts.extend(Text(note, style="yellow") for note in report.notes)
    return Group(*parts)


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return ""
    if is_percent(name):
        return f"{value * 100:.1f}%"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def short(name: str) -> str:
    return name.removeprefix("retention_")


def header(report: Report) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    when = report.watermark.strftime("%Y-%m-%d %H:%M:%S UTC") if report.watermark else "-"
    grid.add_row("watermark", when, "newest event time less the allowed lateness")
    for family in report.scalars:
        if family.name != "retention_watermark_seconds":
            grid.add_row(short(family.name), fmt(family.name, family.samples[0].value), family.help)
    active = report.families.get("retention_active_customers")
    if active is not None:
        for s in sorted(active.samples, key=lambda s: int(s.labels["window"].rstrip("d"))):
            grid.add_row(f"active {s.labels['window']}", fmt("", s.value), active.help)
        dau, mau = active.value(window="1d"), active.value(window="30d")
        exported = any("stickiness" in f.name for f in report.scalars)
        if dau is not None and mau and not exported:
            grid.add_row("stickiness", f"{dau / mau * 100:.1f}%", "DAU / MAU (1d / 30d active)")
    live = report.families.get("retention_active_customers_so_far")
    if live is not None and live.value(window="1d") is not None:
        grid.add_row("active 1d so far", fmt("", live.value(window="1d")), live.help)
    return Panel(grid, title=f"retention report · {report.url}", title_align="left")


def shade(ratio: float) -> Style:
    """White → deep blue as retention goes 0 → 100%, with readable text on top."""
    ratio = min(max(ratio, 0.0), 1.0)
    level = ratio**0.6  # spread the low values, where most cells are
    rgb = tuple(
        round(a + (b - a) * level) for a, b in zip((247, 251, 255), (8, 48, 107), strict=True)
    )
    text = "black" if level < 0.5 else "white"
    return Style(bgcolor=Color.from_rgb(*rgb), color=text)


def cohort_table(report: Report, name: str, period: str, rows: list[CohortRow]) -> Table:
    help_text = report.families[name].help
    table = Table(
        title=f"{help_text} — {period} cohorts",
        caption="grey cells (…) are running: their period is not complete yet; the curves "
        "leave them out",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("cohort", style="bold")
    table.add_column("size", justify="right")
    width = min(max((len(r.values) for r in rows), default=0), MAX_OFFSETS)
    for k in range(width):
        table.add_column(str(k), justify="right")
    for row in rows[-MAX_OFFSETS:]:
        cells: list[Text | str] = [row.cohort, fmt("", row.size)]
        for k in range(width):
            value = row.values[k] if k < len(row.values) else None
            if value is None:
                cells.append(Text(""))
            elif k in row.running:
                cells.append(Text(f"{fmt(name, value)}…", style=RUNNING_STYLE))
            else:
                cells.append(Text(fmt(name, value), style=shade(value)))
        table.add_row(*cells)
    return table


def bar(ratio: float) -> Text:
    full = ratio * BAR_WIDTH
    return Text("█" * int(full) + ("▌" if full - int(full) >= 0.5 else ""), style="blue")


def curves(report: Report, name: str, by_period: dict[str, list[CurvePoint]]) -> Table:
    table = Table(
        title=f"Retention curves ({short(name)} / cohort_size, summed over cohorts)",
        title_justify="left",
    )
    table.add_column("period")
    table.add_column("offset", justify="right")
    table.add_column("retention", justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("retained / size", justify="right", style="dim")
    for period, points in by_period.items():
        for i, point in enumerate(points[:MAX_OFFSETS]):
            table.add_row(
                period if i == 0 else "",
                str(point.offset),
                f"{point.ratio * 100:.1f}%",
                bar(point.ratio),
                f"{point.retained:,.0f} / {point.size:,.0f}",
                end_section=i == min(len(points), MAX_OFFSETS) - 1,
            )
    return table


def period_table(title: str, families: list[Family]) -> Table:
    periods = sorted(
        {s.labels["period"] for f in families for s in f.samples},
        key=lambda p: PERIOD_ORDER.index(p) if p in PERIOD_ORDER else 9,
    )
    table = Table(title=f"{title} — last complete period", title_justify="left")
    table.add_column("metric", style="bold")
    for period in periods:
        table.add_column(period, justify="right")
    table.add_column("meaning", style="dim")
    for family in families:
        values = [fmt(family.name, family.value(period=p)) for p in periods]
        table.add_row(short(family.name), *values, family.help)
    return table


def history_table(report: Report) -> Table:
    table = Table(title="Churn over time (complete periods, oldest first)", title_justify="left")
    table.add_column("period")
    table.add_column("recent periods: churn %", no_wrap=False)
    for period, points in (report.churn_history or {}).items():
        recent = [p for p in points if p.churn is not None][-8:]
        text = "  ".join(f"{p.label} {p.churn * 100:.1f}%" for p in recent if p.churn is not None)
        table.add_row(period, text or "no base yet")
    return table


def state_table(family: Family) -> Table:
    states = sorted({s.labels["state"] for s in family.samples})
    periods = sorted({s.labels["period"] for s in family.samples}, key=_order)
    table = Table(title=family.help, title_justify="left")
    table.add_column("state", style="bold")
    for period in periods:
        table.add_column(period, justify="right")
    for state in states:
        table.add_row(
            state, *(fmt(family.name, family.value(period=p, state=state)) for p in periods)
        )
    return table


def _order(period: str) -> int:
    return PERIOD_ORDER.index(period) if period in PERIOD_ORDER else 9


def breakdown(family: Family) -> Table:
    (label,) = family.label_names
    table = Table(title=f"{family.help} ({short(family.name)})", title_justify="left")
    table.add_column(label, style="bold")
    table.add_column("value", justify="right")
    top = max((s.value for s in family.samples), default=0.0) or 1.0
    table.add_column("", no_wrap=True)
    for s in sorted(family.samples, key=lambda s: -s.value):
        share = s.value if is_percent(family.name) else s.value / top
        table.add_row(s.labels[label], fmt(family.name, s.value), bar(max(share, 0.0)))
    return table


def other(families: list[Family]) -> Table:
    """Families of shapes without a section of their own: named, counted, left to --json."""
    table = Table(title="Other metrics (all values with --json)", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("series", justify="right")
    table.add_column("labels")
    table.add_column("meaning", style="dim")
    for family in families:
        labels = ", ".join(sorted(family.label_names))
        table.add_row(short(family.name), str(len(family.samples)), labels, family.help)
    return table


def timeline(families: list[Family], period: str, depth: int = 12) -> Table | None:
    """One row per recent period start; one column per family (and per extra label value)."""
    columns: list[tuple[Family, dict[str, str], str]] = []
    starts: set[str] = set()
    for family in families:
        extra = sorted(family.label_names - {"period", "start"})
        values = sorted(
            {
                tuple(s.labels[k] for k in extra)
                for s in family.samples
                if s.labels["period"] == period
            }
        )
        for combo in values:
            labels = dict(zip(extra, combo, strict=True))
            title = short(family.name) + (f" {' '.join(combo)}" if combo else "")
            columns.append((family, labels, title))
        starts |= {s.labels["start"] for s in family.samples if s.labels["period"] == period}
    if not columns:
        return None
    table = Table(title=f"Per {period}, recent periods", title_justify="left")
    table.add_column(period, style="bold")
    for _, _, title in columns:
        table.add_column(title.replace("_", " "), justify="right")
    busy = [
        st
        for st in sorted(starts)
        if any(f.value(period=period, start=st, **lb) for f, lb, _ in columns)
    ]
    for start in [st for st in sorted(starts) if busy and st >= busy[0]][-depth:]:
        cells = [
            fmt(f.name, f.value(period=period, start=start, **labels)) for f, labels, _ in columns
        ]
        table.add_row(start, *cells)
    return table


def dimension_table(families: list[Family], dimension: str) -> Table:
    """Rows: each family and its other labels; columns: the dimension's values."""
    values = sorted(
        {
            s.labels["value"]
            for f in families
            for s in f.samples
            if s.labels["dimension"] == dimension
        }
    )
    rows: dict[tuple[str, str], dict[str, float]] = {}
    names: dict[tuple[str, str], str] = {}
    for family in families:
        for s in family.samples:
            if s.labels["dimension"] != dimension:
                continue
            rest = ", ".join(
                f"{v}" for k, v in sorted(s.labels.items()) if k not in ("dimension", "value")
            )
            rows.setdefault((family.name, rest), {})[s.labels["value"]] = s.value
            names[(family.name, rest)] = family.name
    shown = [v for v in values if any(r.get(v) for r in rows.values())]
    table = Table(title=f"By {dimension}", title_justify="left")
    table.add_column("metric", style="bold")
    for value in shown:
        table.add_column(value, justify="right")
    for (name, rest), cells in rows.items():
        label = short(name).removeprefix("breakdown_") + (f" ({rest})" if rest else "")
        table.add_row(label, *(fmt(name, cells.get(v)) for v in shown))
    return table
