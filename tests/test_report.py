"""`retention report`: numbers agree with independent computations, pictures are real
pictures, and a stopped or empty exporter gets a clear message and exit code."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from core.errors import EXIT_PROBLEM, CommandError
from retention.render import render
from retention.report import build
from retention.scrape import Scrape, parse
from tests.cli_fixtures import SimRun, cli_env, closed_port, run_cli, sim_run
from tests.oracle import OracleSettings, compute, key
from tests.services import RETENTION_BIN, ROOT
from tests.waiting import wait_until

__all__ = ["sim_run"]  # the fixture, imported for pytest

# --- grouping by label shape, on a made-up exposition (no stack) -----------------------------

EXPOSITION = """\
# HELP retention_customers Customers tracked.
# TYPE retention_customers gauge
retention_customers 3
# HELP retention_watermark_seconds Watermark.
# TYPE retention_watermark_seconds gauge
retention_watermark_seconds 1772445600
# HELP retention_cohort_size Cohort size.
# TYPE retention_cohort_size gauge
retention_cohort_size{cohort_period="week",cohort="2026-02-23"} 2
retention_cohort_size{cohort_period="week",cohort="2026-03-02"} 1
# HELP retention_cohort_retained Retained.
# TYPE retention_cohort_retained gauge
retention_cohort_retained{cohort_period="week",cohort="2026-02-23",offset="0"} 2
retention_cohort_retained{cohort_period="week",cohort="2026-02-23",offset="1"} 1
retention_cohort_retained{cohort_period="week",cohort="2026-03-02",offset="0"} 1
# HELP retention_cohort_ratio N-period retention.
# TYPE retention_cohort_ratio gauge
retention_cohort_ratio{cohort_period="week",cohort="2026-02-23",offset="0"} 1
retention_cohort_ratio{cohort_period="week",cohort="2026-02-23",offset="1"} 0.5
retention_cohort_ratio{cohort_period="week",cohort="2026-03-02",offset="0"} 1
# HELP retention_cohort_cell_running Running cell.
# TYPE retention_cohort_cell_running gauge
retention_cohort_cell_running{cohort_period="week",cohort="2026-02-23",offset="1"} 1
retention_cohort_cell_running{cohort_period="week",cohort="2026-03-02",offset="0"} 1
# HELP retention_churn_ratio Churn.
# TYPE retention_churn_ratio gauge
retention_churn_ratio{period="week"} 0.25
# HELP retention_lifecycle_customers Lifecycle.
# TYPE retention_lifecycle_customers gauge
retention_lifecycle_customers{period="week",start="2026-03-02",state="new"} 1
retention_lifecycle_customers{period="week",start="2026-03-02",state="dormant"} 4
# HELP retention_rfm_customers Customers per RFM segment.
# TYPE retention_rfm_customers gauge
retention_rfm_customers{segment="vip"} 7
# HELP retention_future_thing Something not invented yet.
# TYPE retention_future_thing gauge
retention_future_thing{a="1",b="2"} 9
"""


def test_every_family_finds_a_section_by_its_label_shape() -> None:
    report = build(Scrape("http://x/metrics", parse(EXPOSITION), 0.0))
    assert [f.name for f in report.by_period] == ["retention_churn_ratio"]
    assert [f.name for f in report.timelines] == ["retention_lifecycle_customers"]
    assert [f.name for f in report.breakdowns] == ["retention_rfm_customers"]
    assert [f.name for f in report.other] == ["retention_future_thing"]
    rows = report.cohorts["retention_cohort_ratio"]["week"]
    assert [(r.cohort, r.size, r.values, r.running) for r in rows] == [
        ("2026-02-23", 2, [1, 0.5], {1}),
        ("2026-03-02", 1, [1], {0}),
    ]
    # Summed counts over complete cells only (the marked ones left out): offset 0 from
    # the first cohort alone.
    (point,) = report.curves["retention_cohort_retained"]["week"]
    assert (point.offset, point.retained, point.size) == (0, 2, 2)
    console = Console(record=True, width=160)
    console.print(render(report, ["week"]))
    text = console.export_text()
    for part in ("50.0%…", "25.0%", "Per week", "dormant", "vip", "future_thing", "2026-02-23"):
        assert part in text, part


def test_no_data_is_a_problem_not_a_crash() -> None:
    empty = (
        "# HELP retention_customers x\n# TYPE retention_customers gauge\nretention_customers 0\n"
    )
    with pytest.raises(CommandError) as caught:
        build(Scrape("http://x/metrics", parse(empty), 0.0))
    assert caught.value.code == EXIT_PROBLEM and "no data yet" in caught.value.message


# --- against the simulated pipeline --------------------------------------------------------


def report_json(run: SimRun) -> dict[str, Any]:
    done = run_cli(["report", "--json"], run.env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def pooled(cohorts: dict[str, dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(offset, retained, size) summed over cohorts, leaving out each running cell."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for cell in cohorts.values():
        for k, n in enumerate(cell["retained"]):
            if k not in cell["running"]:
                sums[k][0] += n
                sums[k][1] += cell["size"]
    return [(k, r, s) for k, (r, s) in sorted(sums.items())]


@pytest.mark.integration
def test_json_curves_agree_with_the_simulation_truth(sim_run: SimRun) -> None:
    data = report_json(sim_run)
    cohorts = sim_run.truth["realized"]["cohorts"]
    for period in ("day", "week", "month"):
        kept = dict(list(cohorts[period].items())[-12:])  # the exporter keeps 12 cohorts
        got = [
            (c["offset"], c["retained"], c["size"])
            for c in data["curves"]["retention_cohort_retained"][period]
        ]
        assert got == pooled(kept), period
        rows = data["cohorts"]["retention_cohort_ratio"][period]
        assert {r["cohort"]: r["size"] for r in rows} == {c: v["size"] for c, v in kept.items()}
    assert data["watermark"].startswith(sim_run.truth["realized"]["watermark_day"])
    assert (
        data["metrics"]["retention_customers"][0]["value"] == sim_run.truth["realized"]["customers"]
    )


@pytest.mark.integration
def test_churn_history_agrees_with_the_oracle_period_by_period(sim_run: SimRun) -> None:
    """Churn of each past period equals the oracle run on the events up to the next period."""
    history = report_json(sim_run)["churn_history"]
    checked = 0
    for period, points, step in (("day", 6, 1), ("week", 4, 7), ("month", 2, None)):
        for point in history[period][-points:]:
            start = date.fromisoformat(point["label"] + ("-01" if period == "month" else ""))
            cutoff = _after_next(start, step)
            events = [e for e in sim_run.events if e["ts"] < cutoff.isoformat()]
            expected = compute(events, OracleSettings())
            for name, field in (
                ("retention_base_start_customers", "base_start"),
                ("retention_base_end_customers", "base_end"),
                ("retention_new_customers", "new"),
                ("retention_lost_customers", "lost"),
            ):
                assert point[field] == expected[key(name, period=period)], (period, point, name)
            checked += 1
    assert checked == 12
    last_week = history["week"][-1]
    scrape = report_json(sim_run)["metrics"]["retention_churn_ratio"]
    exported = {s["labels"]["period"]: s["value"] for s in scrape}
    assert last_week["churn_ratio"] == pytest.approx(exported["week"])


def _after_next(start: date, step: int | None) -> date:
    """First day of the period after the next one (so the oracle's watermark is in the next)."""
    if step is not None:
        return start + timedelta(days=2 * step)
    month = start.month + 2
    return date(start.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


@pytest.mark.integration
def test_terminal_report_shows_the_sections(sim_run: SimRun) -> None:
    done = run_cli(["report", "--period", "all"], sim_run.env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    week = list(sim_run.truth["realized"]["cohorts"]["week"])
    for part in ("retention report", "week cohorts", "day cohorts", "month cohorts", "100.0%"):
        assert part in text, part
    assert "Retention curves" in text and "Churn and customer retention rate" in text
    assert all(cohort in text for cohort in week)
    assert "\x1b[" not in text  # no colour codes when not writing to a terminal


def image_stats(path: Path) -> tuple[tuple[int, int], int, float, np.ndarray]:
    """Size, distinct colours, share of non-white pixels, and the RGB pixels."""
    with Image.open(path) as image:
        size = image.size
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    colors = len(np.unique(pixels.reshape(-1, 3), axis=0))
    ink = float((pixels.sum(axis=2) < 720).mean())
    return size, colors, ink, pixels


def count_near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    return int((np.abs(pixels - np.array(rgb)) <= tolerance).all(axis=2).sum())


@pytest.mark.integration
def test_png_pictures_open_and_show_something(sim_run: SimRun, tmp_path: Path) -> None:
    done = run_cli(["report", "--png", str(tmp_path)], sim_run.env)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "churn_over_time.png",
        "cohort_heatmap_day.png",
        "cohort_heatmap_month.png",
        "cohort_heatmap_week.png",
        "retention_curves.png",
    ]
    for name in names:
        size, colors, ink, image = image_stats(tmp_path / name)
        assert size[0] >= 600 and size[1] >= 300, (name, size)
        assert colors > 30 and ink > 0.02, (name, colors, ink)
        if name.startswith("cohort_heatmap"):
            assert count_near(image, (8, 48, 107)) > 500, name  # the 100% column, deep blue
    # Running cells (their period is not complete) are hatched grey, not coloured.
    weeks = sim_run.truth["realized"]["cohorts"]["week"].values()
    if any(cell["running"] for cell in weeks):
        _, _, _, week = image_stats(tmp_path / "cohort_heatmap_week.png")
        assert count_near(week, (0xEE, 0xEE, 0xEE), tolerance=3) > 100
        _, _, _, churn = image_stats(tmp_path / "churn_over_time.png")
    assert count_near(churn, (0xCB, 0x18, 0x1D)) > 100  # the churn line
    assert count_near(churn, (0x21, 0x71, 0xB5)) > 100  # the CRR line


# --- stopped, empty, wrong -----------------------------------------------------------------


def test_exporter_down_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/metrics"
    done = run_cli(["report", "--exporter", url])
    assert done.returncode == 3
    said = " ".join(done.stderr.split())
    assert f"cannot reach the exporter at {url}" in said and "retention status" in said


@pytest.mark.integration
def test_empty_namespace_says_no_data_yet(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(start=False)
    p.start_exporter()
    done = run_cli(["report"], cli_env(p))
    assert done.returncode == 1
    assert "has no data yet" in " ".join(done.stderr.split())


def test_option_mistakes() -> None:
    assert run_cli(["report", "--period", "year"]).returncode == 2
    done = run_cli(["report", "--watch", "--json"])
    assert done.returncode == 2 and "--watch" in done.stderr


@pytest.mark.integration
def test_watch_refreshes_until_ctrl_c(sim_run: SimRun, tmp_path: Path) -> None:
    screen = tmp_path / "screen"
    with screen.open("w") as out:
        proc = subprocess.Popen(
            [str(RETENTION_BIN), "report", "--watch", "--interval", "0.5"],
            env={**sim_run.env, "TTY_COMPATIBLE": "1"},  # rich draws every frame, as on a tty
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )

    def frames() -> int:
        return screen.read_text().count("retention report")

    try:
        wait_until(lambda: frames() >= 3 or proc.poll() is not None, "three frames", timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert frames() >= 3
