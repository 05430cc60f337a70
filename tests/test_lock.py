"""The Python lock files (scripts/lock.sh) cover pyproject.toml, carry hashes, agree with
each other, and are what the venv (scripts/venv.sh, so CI) has installed."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# `name==version ; marker \` then `--hash=sha256:...` lines
ENTRY = re.compile(
    r"^([A-Za-z0-9._-]+)==(\S+)(?: ; ([^\\]+?))? \\\n"
    r"((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
    re.M,
)


def pins(name: str) -> dict[str, Version]:
    """Package -> pinned version, for the entries whose marker holds here."""
    text = (ROOT / name).read_text()
    entries = ENTRY.findall(text)
    heads = re.findall(r"^[A-Za-z0-9._-]+==", text, re.M)
    assert len(entries) == len(heads) > 0, f"{name}: an entry without hashes"
    return {
        canonicalize_name(pkg): Version(ver)
        for pkg, ver, marker, _ in entries
        if not marker or Marker(marker).evaluate()
    }


def test_the_dev_lock_pins_every_requirement_within_its_range() -> None:
    locked = pins("requirements-dev.lock")
    wanted = [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["dev"],
        *PYPROJECT["build-system"]["requires"],
    ]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{text} is not in the lock: run bash scripts/lock.sh"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{text}: the lock has {locked[name]}; run bash scripts/lock.sh"
        )


def test_the_image_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert runtime.items() <= dev.items()
    for tool in ("pytest", "mypy", "ruff"):
        assert tool not in runtime and tool in dev


def test_the_venv_has_exactly_the_locked_versions() -> None:
    wrong = {}
    for name, pinned in pins("requirements-dev.lock").items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (str(pinned), str(installed))
    assert not wrong, f"(locked, installed): {wrong}; run bash scripts/venv.sh"
