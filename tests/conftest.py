"""Fixtures that run the real pipeline: Kafka, Redis, worker and exporter processes.

Nothing here is faked. `scripts/stack.sh up` starts (or confirms) the services; each
test gets its own namespace, topics and consumer group, and real `retention worker`
and `retention exporter` subprocesses. Every Kafka topic and group a test makes is
deleted when it ends, and the session fails if any is left (tests/broker.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.broker import SESSION, BrokerState, problems
from tests.pipeline_runner import Pipeline
from tests.services import KAFKA, RETENTION_BIN, ROOT

SEED_VARIABLE = "HYPOTHESIS_SEED"
SEED_KEY = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    """Run every hypothesis test from one seed: --hypothesis-seed, else $HYPOTHESIS_SEED,
    else a fresh random one; the header and every failure print it."""
    from hypothesis import core

    given = config.getoption("hypothesis_seed") or os.environ.get(SEED_VARIABLE)
    seed = int(given) if given is not None else random.SystemRandom().randrange(2**32)
    core.global_force_seed = seed
    config.stash[SEED_KEY] = seed


def reproduce_hint(config: pytest.Config) -> str:
    seed = config.stash[SEED_KEY]
    return f"hypothesis seed {seed} (rerun with --hypothesis-seed={seed} or {SEED_VARIABLE}={seed})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [reproduce_hint(config), f"kafka topics and groups of this session contain {SESSION}"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    from hypothesis import is_hypothesis_test

    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed and is_hypothesis_test(getattr(item, "obj", None)):
        rep.sections.append(("hypothesis", reproduce_hint(item.config)))
    return rep


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """The real services; `stack.sh up` is idempotent and exits 0 when already running.
    Torn down after every fixture that uses it, it then fails the session if a test left
    a topic or group of its own, or created or wrote to a default topic."""
    try:
        done = subprocess.run(
            ["bash", "scripts/stack.sh", "up"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/stack.sh up timed out: {exc}")
    if done.returncode != 0:
        pytest.fail(
            f"scripts/stack.sh up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    if not RETENTION_BIN.exists():
        pytest.fail(f"{RETENTION_BIN} is missing: `pip install -e .` into .venv first")
    before = asyncio.run(BrokerState.read(KAFKA))
    yield
    found = problems(before, asyncio.run(BrokerState.read(KAFKA)))
    if found:
        pytest.fail(f"Kafka after session {SESSION}: " + "; ".join(found), pytrace=False)


def _report_logs(node: pytest.Item, pipelines: list[Pipeline]) -> None:
    failed = any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )
    if failed:
        for p in pipelines:
            print(f"\n===== pipeline {p.ns} logs =====\n{p.logs()}")


@pytest.fixture
def pipeline(
    stack: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Pipeline]]:
    """Factory: pipeline(timezone=..., ...) -> a started worker + exporter on fresh topics."""
    made: list[Pipeline] = []

    def make(start: bool = True, **kwargs: object) -> Pipeline:
        p = Pipeline(tmp_path / f"p{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(p)
        if start:
            p.start_worker()
            p.start_exporter()
        return p

    yield make
    _report_logs(request.node, made)
    for p in made:
        p.close()


@pytest.fixture(scope="session")
def session_pipelines(stack: None) -> Iterator[list[Pipeline]]:
    """A list that session-wide fixtures append their pipelines to; closed at session end,
    before the stack's leftover check."""
    made: list[Pipeline] = []
    yield made
    for p in made:
        p.close()


@pytest.fixture(scope="module")
def module_pipelines(
    stack: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Pipeline]]:
    """A list that module-scoped fixtures append their pipelines to; closed at module end."""
    made: list[Pipeline] = []
    yield made
    for p in made:
        print(f"\n===== pipeline {p.ns} logs (module teardown) =====\n{p.logs()}")
        p.close()
