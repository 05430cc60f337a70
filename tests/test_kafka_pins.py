"""The Kafka jars are checked against the SHA-512 sums pinned in scripts/: `stack.sh
install` accepts an intact cache and refuses a tampered, an extra or a missing jar,
naming it. Runs on a copy of the installed jars, never on the stack's own cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from retention.stack.settings import StackSettings
from tests.services import ROOT

pytestmark = pytest.mark.integration

STACK = StackSettings()
PINS = ROOT / "scripts" / f"kafka-{STACK.kafka_version}.sha512"


@pytest.fixture
def cache(stack: None, tmp_path: Path) -> Path:
    """A copy of the installed Kafka (jars and marker) in a cache of its own."""
    source = STACK.kafka_libs.parent
    shutil.copytree(source, tmp_path / source.name)
    return tmp_path


def install(cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/stack.sh", "install"],
        cwd=ROOT,
        env={**os.environ, "RETENTION_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def libs(cache: Path) -> Path:
    return cache / f"kafka-{STACK.kafka_version}" / "libs"


def test_every_installed_jar_is_pinned() -> None:
    pinned = {line.split()[1] for line in PINS.read_text().splitlines() if line[:1] not in "#"}
    assert len(pinned) > 30 and all(name.endswith(".jar") for name in pinned)
    assert f"kafka_2.13-{STACK.kafka_version}.jar" in pinned


def test_intact_jars_are_accepted(cache: Path) -> None:
    done = install(cache)
    assert done.returncode == 0, done.stderr
    assert "(SHA-512 pinned)" in done.stderr


def test_a_tampered_jar_is_refused_by_name(cache: Path) -> None:
    jar = libs(cache) / f"kafka-clients-{STACK.kafka_version}.jar"
    with jar.open("ab") as out:
        out.write(b"\0")
    done = install(cache)
    assert done.returncode != 0
    assert f"SHA-512 mismatch: {jar.name}" in done.stderr, done.stderr
    assert str(PINS) in done.stderr and "delete" in done.stderr


def test_an_extra_or_a_missing_jar_is_refused(cache: Path) -> None:
    folder = libs(cache)
    shutil.copy(folder / f"kafka-clients-{STACK.kafka_version}.jar", folder / "evil-1.0.jar")
    (folder / f"kafka-raft-{STACK.kafka_version}.jar").unlink()
    done = install(cache)
    assert done.returncode != 0
    assert "not pinned: evil-1.0.jar" in done.stderr, done.stderr
    assert f"missing: kafka-raft-{STACK.kafka_version}.jar" in done.stderr, done.stderr
