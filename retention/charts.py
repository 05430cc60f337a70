"""PNG pictures of a Report for people who would rather look than read.

matplotlib is imported here only, with the non-interactive Agg backend, so the other
commands start fast and nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retention.report import PERIOD_ORDER, Report

RATIO = "retention_cohort_ratio"
RETAINED = "retention_cohort_retained"


def write_pngs(report: Report, out: Path) -> list[Path]:
    """Cohort heatmaps (one per period type), retention curves and churn over time."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for period, rows in report.cohorts.get(RATIO, {}).items():
        if rows:
            written.append(_heatmap(report, period, out / f"cohort_heatmap_{period}.png"))
    if report.curves.get(RETAINED):
        written.append(_curves(report, out / "retention_curves.png"))
    if report.churn_history and any(
        p.churn is not None for points in report.churn_history.values() for p in points
    ):
        written.append(_churn(report, out / "churn_over_time.png"))
    return written


def _heatmap(report: Report, period: str, path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report.cohorts[RATIO][period][-15:]
    width = max(len(r.values) for r in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        for k, value in enumerate(row.values):
            if value is not None:
                grid[i, k] = value * 100
    running = {(i, k) for i, row in enumerate(rows) for k in row.running if k < width}
    for i, k in running:
        grid[i, k] = np.nan  # not coloured like a finished cell: drawn hatched below
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * width + 3), max(3.0, 0.42 * len(rows) + 1.8)))
    image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i in range(len(rows)):
        for k in range(width):
            if not np.isnan(grid[i, k]):
                color = "white" if grid[i, k] > 55 else "black"
                ax.text(
                    k, i, f"{grid[i, k]:.0f}", ha="center", va="center", fontsize=8, color=color
                )
    for i, k in sorted(running):
        _running_cell(ax, i, k, rows[i].values[k])
    ax.set_xticks(range(width), [str(k) for k in range(width)])
    sizes = [f"{r.cohort}  (n={r.size:,.0f})" if r.size else r.cohort for r in rows]
    ax.set_yticks(range(len(rows)), sizes)
    ax.set_xlabel(f"{period}s since first activity")
    title = f"Cohort retention by {period}, % of cohort active"
    if running:
        title += "\nhatched grey: running, the period is not complete yet"
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="% retained")
    return _save(fig, path)


def _running_cell(ax: Any, row: int, offset: int, value: float | None) -> None:
    """A running cell: hatched grey, its partial value in grey italics."""
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle(
            (offset - 0.5, row - 0.5),
            1,
            1,
            facecolor="#eeeeee",
            edgecolor="#9e9e9e",
            hatch="///",
            linewidth=0,
        )
    )
    if value is not None:
        ax.text(
            offset,
            row,
            f"{value * 100:.0f}",
            ha="center",
            va="center",
            fontsize=8,
            color="#636363",
            style="italic",
        )


def _curves(report: Report, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    periods = [p for p in PERIOD_ORDER if len(report.curves[RETAINED].get(p, [])) > 1]
    periods = periods or [p for p in PERIOD_ORDER if report.curves[RETAINED].get(p)]
    fig, axes = plt.subplots(1, len(periods), figsize=(5.5 * len(periods), 4.2), squeeze=False)
    for ax, period in zip(axes[0], periods, strict=True):
        for row in report.cohorts[RATIO].get(period, []):
            done = [v for k, v in enumerate(row.values) if v is not None and k not in row.running]
            if len(done) > 1:
                ax.plot(range(len(done)), [v * 100 for v in done], color="#9ecae1", lw=0.8)
        points = report.curves[RETAINED][period]
        ax.plot(
            [p.offset for p in points],
            [p.ratio * 100 for p in points],
            color="#08306b",
            lw=2.5,
            marker="o",
            label="all cohorts (summed counts)",
        )
        ax.set_ylim(0, 105)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{period}s since first activity")
        ax.set_ylabel("% of cohort active")
        ax.set_title(f"Retention curve by {period}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def _churn(report: Report, path: Path) -> Path:
    """Churn on the left axis, CRR on the right: they live at opposite ends of 0-100%."""
    import matplotlib.pyplot as plt

    history = report.churn_history or {}
    periods = [p for p in PERIOD_ORDER if any(c.churn is not None for c in history.get(p, []))]
    fig, axes = plt.subplots(len(periods), 1, figsize=(9, 3.2 * len(periods)), squeeze=False)
    for ax, period in zip(axes[:, 0], periods, strict=True):
        points = [c for c in history[period] if c.churn is not None]
        labels = [c.label for c in points]
        churn = [(c.churn or 0) * 100 for c in points]
        ax.plot(labels, churn, marker="o", color="#cb181d", label="churn: lost / start base")
        ax.set_ylim(0, max(5.0, max(churn) * 1.3))
        ax.set_ylabel("churn %", color="#cb181d")
        right = ax.twinx()
        crr = [(c.crr or 0) * 100 for c in points]
        right.plot(labels, crr, marker="s", color="#2171b5", label="CRR: (end base - new) / start")
        right.set_ylim(min(80.0, min(crr) - 5), 100.5)
        right.set_ylabel("CRR %", color="#2171b5")
        ax.set_title(f"Churn and customer retention rate per {period}")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper left", fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
