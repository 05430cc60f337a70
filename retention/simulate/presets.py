"""Named starting points for `retention simulate`: each preset gives values to some of
its options; options given on the command line win over the preset."""

from __future__ import annotations

from core.errors import CommandError

# preset name -> (what it is for, option name -> value as typed on the command line)
PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "standard": ("42 days of app traffic, 100 installs a day (the option defaults)", {}),
    "sample": (
        "a small feed: 42 days, 12 installs a day (about 500 customers), for the demo",
        {"days": 42, "installs": 12.0},
    ),
}


def preset_values(name: str) -> dict[str, object]:
    """The option values of a preset; a CommandError (exit 2) names the known ones."""
    if name not in PRESETS:
        raise CommandError(f"--preset must be one of {', '.join(PRESETS)}")
    return PRESETS[name][1]
