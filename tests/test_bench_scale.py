"""The scale-out benchmark runs end to end at a tiny size (its figures are not checked:
benchmarks are not timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import scale

pytestmark = pytest.mark.integration


def test_scale_bench_runs(stack: None, tmp_path: Path) -> None:
    tiny = ["--events", "3000", "--runs", "1", "--partitions", "4"]
    code = scale.main(
        ["--workers", "1,2", "--redis", "standalone,cluster", *tiny, "--results", str(tmp_path)]
    )
    assert code == 0, "a configuration did not apply every event"
    (result,) = tmp_path.glob("*.json")
    summary = json.loads(result.read_text())["summary"]
    configurations = [(r["redis"], r["workers"]) for r in summary]
    assert configurations == [("cluster", 1), ("cluster", 2), ("standalone", 1), ("standalone", 2)]
    assert all(r["rate"]["median"] > 0 and r["verified"] for r in summary)
