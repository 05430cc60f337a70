"""Helpers for the command tests: run the real `retention` binary, and one shared simulated
pipeline (real Kafka -> worker -> Redis -> exporter) that the simulate, report and status
tests all look at, so the worker starts once per session.

A command always runs with explicit topics, group and namespace: a pipeline's, or
(without one) this session's unused names, never the defaults."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.broker import delete_marked, unused_settings
from tests.pipeline_runner import Pipeline
from tests.services import KAFKA, RETENTION_BIN, ROOT

SIM_ARGS = ["--seed", "11", "--days", "40", "--installs", "40", "--start", "2026-02-23"]


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delete_topic(topic: str) -> None:
    """Remove a throwaway topic a test produced to without a pipeline, and every topic or
    group whose name contains it."""
    asyncio.run(delete_marked(KAFKA, topic))


def cli_env(p: Pipeline | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **unused_settings()}
    if p is not None:
        env.update(p.settings)
        env["RETENTION_GROUP_ID"] = p.group
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The installed `retention` command, as a user runs it."""
    return subprocess.run(
        [str(RETENTION_BIN), *args],
        env=env or cli_env(),
        input=input,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def said(done: object) -> str:
    """A finished command's stdout and stderr, with line wrapping undone."""
    out = f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"
    return " ".join(out.split())


def assert_refused_fast(
    commands: dict[str, list[str]],
    env: dict[str, str],
    expected: Iterable[str],
    secrets: Iterable[str],
) -> None:
    """Each command, run with credentials a server refuses, exits 3 within 30 s, says
    every `expected` text (the reason, the setting to check) and none of `secrets`."""
    for name, args in commands.items():
        started = time.monotonic()
        done = run_cli(args, env, timeout=90)
        seconds = time.monotonic() - started
        assert done.returncode == 3, (name, said(done))
        assert seconds < 30, (name, seconds)
        text = said(done)
        assert all(part in text for part in expected), (name, text)
        assert not any(secret in text for secret in secrets), name


@dataclass
class SimRun:
    pipeline: Pipeline
    out: Path
    truth: dict[str, Any]
    events: list[dict[str, Any]]
    env: dict[str, str]


_SHARED: dict[str, SimRun] = {}


@pytest.fixture
def sim_run(session_pipelines: list[Pipeline], tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    """`retention simulate` through the real stack, once per session; closed at session end."""
    if "run" not in _SHARED:
        p = Pipeline(tmp_path_factory.mktemp("simulated"))
        session_pipelines.append(p)
        p.start_worker()
        p.start_exporter()
        out = p.workdir / "simulation"
        env = cli_env(p)
        done = run_cli(["simulate", *SIM_ARGS, "--out", str(out)], env)
        if done.returncode != 0:
            p.fail(f"simulate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        p.wait_until_consumed(timeout=120)
        truth = json.loads((out / "truth.json").read_text())
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        _SHARED["run"] = SimRun(p, out, truth, events, env)
    return _SHARED["run"]
