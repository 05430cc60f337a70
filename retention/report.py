"""`retention report`: turn one scrape of the exporter into tables people can read.

Families are grouped by their label names, not by a fixed list, so a metric the exporter
adds later (lifecycle states, RFM segments, unbounded retention…) gets a section of the
right shape without changes here; a section appears only when its metrics exist.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import EXIT_PROBLEM, CommandError
from retention.curve import CurvePoint, pooled_curve
from retention.history import ChurnPoint
from retention.scrape import Family, Scrape

PERIOD_ORDER = ("day", "week", "month")
COHORT_CELL = frozenset({"cohort_period", "cohort", "offset"})
COHORT_COLUMN = frozenset({"cohort_period", "cohort"})
TIMELINE = frozenset({"period", "start"})
DIMENSION = frozenset({"dimension", "value"})
SIZE = "retention_cohort_size"
# The exporter's mark of a cell whose period is not complete: partial, left out of curves.
RUNNING_CELL = "retention_cohort_cell_running"
PERCENT_ENDINGS = ("_ratio", "_rate", "_crr")


@dataclass
class CohortRow:
    cohort: str
    size: float | None
    values: list[float | None]  # by offset; None where the exporter has no cell
    running: frozenset[int] = frozenset()  # offsets whose period is not complete


@dataclass
class Report:
    url: str
    watermark_ms: int | None
    families: dict[str, Family]
    scalars: list[Family] = field(default_factory=list)
    cohorts: dict[str, dict[str, list[CohortRow]]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[CurvePoint]]] = field(default_factory=dict)
    by_period: list[Family] = field(default_factory=list)
    by_period_state: list[Family] = field(default_factory=list)
    timelines: list[Family] = field(default_factory=list)  # {period, start[, one more]}
    by_dimension: list[Family] = field(default_factory=list)  # {dimension, value, ...}
    breakdowns: list[Family] = field(default_factory=list)
    other: list[Family] = field(default_factory=list)
    churn_history: dict[str, list[ChurnPoint]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def watermark(self) -> datetime | None:
        if self.watermark_ms is None:
            return None
        return datetime.fromtimestamp(self.watermark_ms / 1000, tz=UTC)


def is_percent(name: str) -> bool:
    """Ratios are shown as percentages; Prometheus convention names them `_ratio`."""
    return name.endswith(PERCENT_ENDINGS) or "stickiness" in name


def build(scrape: Scrape) -> Report:
    """Group every family by the shape of its labels; raise when there is nothing to show."""
    families = scrape.families
    customers = scrape.get("retention_customers")
    watermark = scrape.get("retention_watermark_seconds")
    if not customers or watermark is None:
        raise CommandError(
            f"the exporter at {scrape.url} has no data yet: no events have been applied in "
            "its namespace. Feed some (`retention feed FILE`, `retention simulate`), check that "
            "a worker runs (`retention status`), and try again.",
            EXIT_PROBLEM,
        )
    report = Report(scrape.url, round(watermark * 1000), families)
    for name in sorted(families):
        _place(report, families[name])
    size, running = families.get(SIZE), families.get(RUNNING_CELL)
    for name, family in families.items():
        if family.label_names == COHORT_CELL and name != RUNNING_CELL:
            report.cohorts[name] = cohort_rows(family, size, running)
            if size is not None and not is_percent(name):
                report.curves[name] = {
                    p: pooled_curve((row.size, row.values, row.running) for row in rows)
                    for p, rows in report.cohorts[name].items()
                }
    return report


def _place(report: Report, family: Family) -> None:
    labels = family.label_names
    if not labels:
        report.scalars.append(family)
    elif labels in (COHORT_CELL, COHORT_COLUMN):
        return  # shown as cohort tables (running cells marked) and curves
    elif labels == {"period"}:
        report.by_period.append(family)
    elif labels == {"period", "state"}:
        report.by_period_state.append(family)
    elif labels >= TIMELINE and len(labels) <= 3:
        report.timelines.append(family)
    elif labels >= DIMENSION and not labels & COHORT_COLUMN:
        report.by_dimension.append(family)
    elif len(labels) == 1:
        report.breakdowns.append(family)
    else:
        report.other.append(family)


def cohort_rows(
    family: Family, size: Family | None, running: Family | None = None
) -> dict[str, list[CohortRow]]:
    """Per period type, one row per cohort (oldest first), cells by offset, with the
    offsets the exporter marks running."""
    cells: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for s in family.samples:
        cells[s.labels["cohort_period"]][s.labels["cohort"]][int(s.labels["offset"])] = s.value
    open_cells: dict[tuple[str, str], set[int]] = defaultdict(set)
    for s in running.samples if running is not None else ():
        if s.value:
            key = (s.labels["cohort_period"], s.labels["cohort"])
            open_cells[key].add(int(s.labels["offset"]))
    out: dict[str, list[CohortRow]] = {}
    for period in sorted(cells, key=_period_key):
        rows = []
        for cohort in sorted(cells[period]):
            by_offset = cells[period][cohort]
            values = [by_offset.get(k) for k in range(max(by_offset) + 1)]
            count = size.value(cohort_period=period, cohort=cohort) if size else None
            marked = frozenset(open_cells.get((period, cohort), ()))
            rows.append(CohortRow(cohort, count, values, marked))
        out[period] = rows
    return out


def _period_key(period: str) -> int:
    return PERIOD_ORDER.index(period) if period in PERIOD_ORDER else len(PERIOD_ORDER)


def as_json(report: Report) -> dict[str, Any]:
    """Everything the terminal shows, plus every raw sample, in plain JSON types."""
    return {
        "exporter": report.url,
        "watermark": report.watermark.isoformat() if report.watermark else None,
        "metrics": {
            name: [{"labels": s.labels, "value": s.value} for s in f.samples]
            for name, f in sorted(report.families.items())
        },
        "cohorts": {
            name: {
                p: [{**asdict(r), "running": sorted(r.running)} for r in rows]
                for p, rows in by_period.items()
            }
            for name, by_period in report.cohorts.items()
        },
        "curves": {
            name: {
                p: [{**asdict(c), "ratio": c.ratio} for c in points]
                for p, points in by_period.items()
            }
            for name, by_period in report.curves.items()
        },
        "churn_history": None
        if report.churn_history is None
        else {p: [c.as_dict() for c in points] for p, points in report.churn_history.items()},
        "notes": report.notes,
    }
