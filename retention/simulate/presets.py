"""Named starting points for the generator: each preset gives values to some of
`retention simulate`'s options (options given on the command line win), and
`preset_config` builds a generator config from one for Python callers (the bench, the
tests)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from core.errors import CommandError
from retention.simulate.config import Curve, SimConfig

# preset name -> (what it is for, option name -> value as typed on the command line)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("the option defaults", {}),
    "sample": ("a small feed, about 500 customers", {"days": 42, "installs": 12.0}),
    "bench": (
        "the benchmark's mix",
        {
            "days": 90,
            "customers": 100_000,
            "profile": "bench",
            "curve": "power:0.07:0.2",
            "hazard": 0.001,
            "weekly": 0.0,
        },
    ),
    "varied": (
        "every behaviour the tracker handles, for the tests",
        {
            "days": 60,
            "customers": 2000,
            "profile": "varied",
            "curve": "exp:0.5:12",
            "hazard": 0.03,
            "weekly": 0.0,
        },
    ),
}


def preset_values(name: str) -> dict[str, Any]:
    """The option values of a preset; a CommandError (exit 2) names the known ones."""
    if name not in PRESETS:
        raise CommandError(f"--preset must be one of {', '.join(PRESETS)}")
    return PRESETS[name][1]


def preset_config(name: str, start: date, **overrides: Any) -> SimConfig:
    """A generator config from a preset, with SimConfig fields in `overrides` on top."""
    values = dict(preset_values(name))
    if "curve" in values:
        values["curve"] = Curve.parse(values["curve"])
    return replace(SimConfig(start=start, **values), **overrides)
