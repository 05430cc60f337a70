"""One benchmark run's shared resources: its tag, scratch directory, Redis and results.

Everything the run creates carries the random tag (topics, consumer groups, Redis
namespaces), so `cleanup` can find and delete all of it at the end.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import memory
from bench.kafka import delete_groups_containing, delete_topics_containing
from bench.options import STACK, Options
from bench.procs import Child, loadavg, pid_from_file, start_private_redis
from bench.provenance import machine
from bench.report import progress
from bench.worker import Target
from core.redis_client import sync_client
from core.redis_url import redact
from core.settings import Settings

ENCODING_SETTINGS = ("hash-max-listpack-*", "zset-max-listpack-*", "set-max-*", "list-max-*")


class Session:
    """The tag, scratch directory, Redis (the stack's or a private one) and results of a run."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.tag = "bm" + secrets.token_hex(3)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.tag}-"))
        self.private_redis: Child | None = None
        self.redis_url = opts.redis_url
        self.redis_config = encoding_config(opts.redis_url)
        if opts.private_redis:
            self.private_redis, self.redis_url = start_private_redis(
                self.workdir, self.redis_config
            )
        self.redis = sync_client(Settings(redis_url=self.redis_url), timeout=60)
        self.started = datetime.now(UTC).replace(microsecond=0)
        self.results: dict[str, Any] = {
            "started": self.started.isoformat(),
            "command": " ".join([".venv/bin/python -m bench.run", *map(redact, sys.argv[1:])]),
            "tag": self.tag,
            "options": {**asdict(opts), "redis_url": redact(opts.redis_url)},
            "machine": machine(),
            "redis_url": redact(self.redis_url),
            "redis_encoding_config": self.redis_config,
            "datasets": {},
            "runs": {"limit": [], "naive": [], "tracker": [], "latency": []},
            "load": [],
        }
        self.namespaces: list[str] = []
        # processes whose CPU time is measured beside each child's
        self.pids = {
            "redis": int(self.redis.info("server")["process_id"]),
            "kafka": pid_from_file(STACK.pid_file("kafka")),
        }

    def target(self, topic: str, suffix: str, cohorts_kept: int = 12) -> Target:
        """A worker's target on `topic`, in namespace `<tag><suffix>` (deleted at cleanup)."""
        ns = f"{self.tag}{suffix}"
        if ns not in self.namespaces:
            self.namespaces.append(ns)
        return Target(
            bootstrap=self.opts.bootstrap,
            redis_url=self.redis_url,
            topic=topic,
            partitions=self.opts.partitions,
            namespace=ns,
            group=f"{self.tag}-worker-{suffix}",
            workdir=self.workdir,
            cohorts_kept=cohorts_kept,
            shards=self.opts.shards,
        )

    def note_load(self, phase: str) -> None:
        """Record the load average as a phase starts (background load explains outliers)."""
        self.results["load"].append({"phase": phase, "at": time.time(), "loadavg": loadavg()})

    async def cleanup(self) -> None:
        """Delete the run's namespaces, topics and groups; failures are reported, not raised."""
        for ns in self.namespaces:
            try:
                memory.delete_namespace(self.redis, ns)
            except Exception as exc:  # cleanup must not hide the results
                progress.print(f"[yellow]redis cleanup of {ns} failed: {exc!r}[/yellow]")
        try:
            topics = await delete_topics_containing(self.opts.bootstrap, self.tag)
            groups = await delete_groups_containing(self.opts.bootstrap, self.tag)
            progress.print(
                f"cleaned up {len(topics)} topics, {len(groups)} groups, "
                f"{len(self.namespaces)} namespaces"
            )
        except Exception as exc:
            progress.print(f"[yellow]kafka cleanup failed: {exc!r}[/yellow]")

    def close(self) -> None:
        """After a successful run: stop the private Redis and remove logs and worker state."""
        if self.private_redis is not None:
            self.private_redis.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def encoding_config(url: str) -> dict[str, str]:
    """The Redis's encoding thresholds (the local stack tunes them: retention/stack/config.py)."""
    client = sync_client(Settings(redis_url=url), timeout=30, decode_responses=True)
    try:
        config: dict[str, str] = {}
        for pattern in ENCODING_SETTINGS:
            for name, value in client.config_get(pattern).items():
                config[str(name)] = str(value)
        return config
    finally:
        client.close()
