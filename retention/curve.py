"""The pooled retention curve: retention by offset over many cohorts.

Retained customers and cohort sizes are summed over every cohort whose period
cohort+offset is complete, and the ratio is taken of the sums; averaging the cohorts'
ratios would weigh a cohort of ten like a cohort of ten thousand. The report draws it
from the exporter's cells (leaving out those the exporter marks running) and
`retention simulate` writes it into its ground truth.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass


@dataclass
class CurvePoint:
    offset: int
    retained: float
    size: float

    @property
    def ratio(self) -> float:
        return self.retained / self.size if self.size else 0.0


def pooled_curve(
    rows: Iterable[tuple[float | None, Sequence[float | None], Collection[int]]],
) -> list[CurvePoint]:
    """Curve of (cohort size, retained by offset, running offsets) rows: a running cell
    (its period is not complete) is left out, as are cells the row does not have (None)."""
    retained: dict[int, float] = {}
    sizes: dict[int, float] = {}
    for size, values, running in rows:
        for k, value in enumerate(values):
            if value is not None and size and k not in running:
                retained[k] = retained.get(k, 0) + value
                sizes[k] = sizes.get(k, 0) + size
    return [CurvePoint(k, retained[k], sizes[k]) for k in sorted(sizes)]
