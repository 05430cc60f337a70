"""Run the whole benchmark against the local stack and report.

    .venv/bin/python -m bench.run --customers 1000000 --runs 3     # full size
    .venv/bin/python -m bench.run --customers 50000 --runs 2       # smoke

Needs `bash scripts/stack.sh up` (Kafka 127.0.0.1:19092, Redis 127.0.0.1:16379).
Everything it creates carries one random tag (topics, consumer groups, Redis
namespaces) and is deleted at the end unless --keep. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import report
from bench.memory_phase import memory_phase
from bench.options import Options, parse_args
from bench.procs import ROOT
from bench.profile import Profiler
from bench.provenance import code_digest
from bench.report import progress
from bench.session import Session
from bench.throughput_runs import produce_topics, profiled_run, throughput_and_latency

RESULTS = Path(__file__).resolve().parent / "results"


async def run(opts: Options) -> dict[str, Any]:
    """Every phase in order; the run's topics, groups and keys are deleted even on failure."""
    session = Session(opts)
    results = session.results
    profiler = Profiler(opts.profile, opts.profile_seconds, session.workdir)
    progress.print(f"[bold]benchmark {session.tag}[/bold]: logs and state in {session.workdir}")
    try:
        data = await produce_topics(session) if opts.runs else None
        if data is not None:
            await throughput_and_latency(session, data)
        if opts.memory:
            await memory_phase(session, profiler)
        elif opts.profile and data is not None:
            await profiled_run(session, data, profiler)
    finally:
        session.note_load("end")
        if not opts.keep:
            await session.cleanup()
    session.close()  # logs are kept when a phase failed
    results["summary"] = report.summarise(results)
    if code_digest() != results["machine"]["code_digest"]:
        # Workers and the exporter are started along the way and load the code as it
        # is then: a run that straddles an edit mixes two versions of the tracker.
        results["code_changed_during_run"] = True
        progress.print(
            "[red]streams/, metrics/ or retention/ changed during the run: "
            "the figures mix code versions[/red]"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run, write the JSON to bench/results/ and print the table."""
    results = asyncio.run(run(parse_args(argv)))
    path = report.write(results, RESULTS)
    report.render(results, Console(width=max(Console().width, 150)))
    progress.print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
