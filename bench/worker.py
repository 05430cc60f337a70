"""The real `retention worker` as the benchmark starts it: where it reads and writes.

Every worker gets its own namespace, consumer group and state directory (a `Target`);
`wait_idle` waits until its group has committed the whole topic.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench.kafka import CommitWatcher, end_offsets
from bench.procs import VENV_BIN, Child, free_port
from core.settings import Settings

POLL = 0.2  # seconds between reads of a group's committed offsets
# The worker's default shard count; the benchmark sets RETENTION_SHARDS explicitly so
# that worker, exporter and the benchmark's own key arithmetic always agree.
DEFAULT_SHARDS: int = Settings.model_fields["shards"].default


@dataclass(frozen=True, slots=True)
class Target:
    """Where one worker reads and writes."""

    bootstrap: str
    redis_url: str
    topic: str
    partitions: int
    namespace: str
    group: str
    workdir: Path
    cohorts_kept: int = 12
    shards: int = DEFAULT_SHARDS

    def settings(self) -> Settings:
        """The tracker's settings of this target, as far as a Redis client needs them."""
        return Settings(redis_url=self.redis_url, namespace=self.namespace, shards=self.shards)

    def env(self) -> dict[str, str]:
        return {
            "RETENTION_KAFKA_BOOTSTRAP": self.bootstrap,
            "RETENTION_REDIS_URL": self.redis_url,
            "RETENTION_NAMESPACE": self.namespace,
            "RETENTION_EVENTS_TOPIC": self.topic,
            "RETENTION_DLQ_TOPIC": f"{self.topic}.dlq",
            "RETENTION_LIFECYCLE_TOPIC": f"{self.topic}.lifecycle",
            "RETENTION_GROUP_ID": self.group,
            "RETENTION_EVENTS_PARTITIONS": str(self.partitions),
            "RETENTION_COHORTS_KEPT": str(self.cohorts_kept),
            "RETENTION_SHARDS": str(self.shards),
            "RETENTION_STATE_DIR": str(self.workdir / f"state-{self.namespace}"),
        }


@dataclass(slots=True)
class Worker:
    """A started worker and the port of its Prometheus endpoint."""

    child: Child
    metrics_port: int


def start_worker(target: Target, name: str) -> Worker:
    """Start `retention worker` on the target, with free ports for its web and metrics."""
    port = free_port()
    env = {
        **target.env(),
        "RETENTION_WORKER_WEB_PORT": str(free_port()),
        "RETENTION_WORKER_METRICS_PORT": str(port),
    }
    child = Child(
        name, [str(VENV_BIN / "retention"), "worker"], env, target.workdir / f"{name}.log"
    )
    return Worker(child, port)


async def wait_idle(target: Target, worker: Worker, timeout: float = 120) -> None:
    """Wait until the group has committed everything in the topic."""
    ends = await end_offsets(target.bootstrap, target.topic, target.partitions)
    async with CommitWatcher(target.bootstrap, target.topic, target.partitions) as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.child.check()
            committed = await watcher.committed(target.group)
            if all(committed.get(p, 0) >= e for p, e in ends.items()):
                return
            await asyncio.sleep(POLL)
    raise TimeoutError(f"{worker.child.name} did not catch up within {timeout:.0f}s")
