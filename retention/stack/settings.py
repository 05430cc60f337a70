"""Where the stack lives and what it runs: the tracker's Settings plus the stack's own knobs.

Ports come from core.settings.Settings, so the stack, the worker, the exporter and the
tests agree on them through the same RETENTION_* variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from core.settings import Port, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]

# The three masters of the stack's Redis Cluster (retention/stack/cluster.py).
CLUSTER_NODES = ("redis-cluster-1", "redis-cluster-2", "redis-cluster-3")
# Start order; `down` stops them in reverse. redis-secure is a second standalone Redis
# with an ACL user and TLS (retention/stack/secure_redis.py). The sentinel watches the
# open standalone Redis; Prometheus comes last so that its first rule evaluations find
# Alertmanager up.
SERVICE_NAMES = (
    "kafka",
    "redis",
    "redis-secure",
    "redis-sentinel",
    *CLUSTER_NODES,
    "alertmanager",
    "prometheus",
)


class StackError(Exception):
    """The stack cannot do what was asked; the message says why (and where the log is)."""


@dataclass(frozen=True)
class Service:
    """One service of the stack; clients use the first port, all must be free to start it."""

    name: str
    ports: tuple[int, ...]

    @property
    def port(self) -> int:
        return self.ports[0]


ClusterPorts = Annotated[tuple[Port, Port, Port], NoDecode]


class StackSettings(Settings):
    """The tracker's settings and what only the stack needs (RETENTION_STATE, ...)."""

    # 4.4.0 is verified with aiokafka 0.14 and faust-streaming 0.15 (produce, consume
    # with a committed group, transactions, a Faust worker with a table); 4.3.1, 4.0.2
    # and 3.9.2 pass the same checks.
    kafka_version: str = "4.4.0"
    # pid files, logs, configs and data of every service; `down --purge` deletes it
    state: Path = REPO_ROOT / ".stack"
    # the Kafka jars, kept across `down --purge`
    cache: Path = Path.home() / ".cache" / "retention-tracker"
    # Prometheus's scrape and rule evaluation interval
    scrape_interval: str = "5s"
    # seconds to wait for each service to become ready, and from SIGTERM to SIGKILL
    stack_start_timeout: Annotated[float, Field(gt=0)] = 90
    stack_stop_timeout: Annotated[float, Field(gt=0)] = 20
    # The Redis Cluster's three masters (client ports, and the ports of the cluster bus
    # they talk to each other on) and the Sentinel that watches the standalone Redis as
    # service `redis_sentinel_service`; e.g. RETENTION_REDIS_CLUSTER_PORTS=17001,17002,17003
    redis_cluster_ports: ClusterPorts = (17001, 17002, 17003)
    redis_cluster_bus_ports: ClusterPorts = (27001, 27002, 27003)
    redis_sentinel_port: Port = 16390
    # the secured Redis: the ACL user on the plain port, and the same server over TLS
    redis_secure_port: Port = 16380
    redis_secure_tls_port: Port = 16381
    redis_sentinel_service: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "retention"

    @field_validator("redis_cluster_ports", "redis_cluster_bus_ports", mode="before")
    @classmethod
    def _port_list(cls, value: object) -> object:
        """`17001,17002,17003` from the environment; one port per cluster node."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> StackSettings:
        """The stack serves Kafka instead of connecting to it as a client, so the clients'
        RETENTION_KAFKA_* security is not checked here: a shell pointed at the SASL_SSL
        listener names a CA file that `up` on a purged state directory has yet to make."""
        return self

    @model_validator(mode="after")
    def _redis_security(self) -> StackSettings:
        """Likewise for the clients' RETENTION_REDIS_* login and TLS files."""
        return self

    @field_validator("state", "cache")
    @classmethod
    def _absolute(cls, where: Path) -> Path:
        """Absolute and without symlinks, as /proc/<pid>/cwd shows a service's directory."""
        return where.expanduser().resolve()

    def services(self) -> list[Service]:
        ports = {
            "kafka": (self.kafka_port, self.kafka_controller_port, self.kafka_sasl_ssl_port),
            "redis": (self.redis_port,),
            "redis-secure": (self.redis_secure_port, self.redis_secure_tls_port),
            "redis-sentinel": (self.redis_sentinel_port,),
            "alertmanager": (self.alertmanager_port,),
            "prometheus": (self.prometheus_port,),
        }
        nodes = zip(self.redis_cluster_ports, self.redis_cluster_bus_ports, strict=True)
        ports.update(zip(CLUSTER_NODES, nodes, strict=True))
        return [Service(name, ports[name]) for name in SERVICE_NAMES]

    def service(self, name: str) -> Service:
        (found,) = [s for s in self.services() if s.name == name]
        return found

    @property
    def redis_cluster_url(self) -> str:
        """RETENTION_REDIS_URL of the stack's cluster: every node a seed."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.redis_cluster_ports)
        return f"redis+cluster://{seeds}"

    @property
    def redis_sentinel_url(self) -> str:
        """RETENTION_REDIS_URL of the standalone Redis found through the stack's Sentinel."""
        where = f"127.0.0.1:{self.redis_sentinel_port}"
        return f"redis+sentinel://{where}/{self.redis_sentinel_service}/0"

    @property
    def kafka_libs(self) -> Path:
        return self.cache / f"kafka-{self.kafka_version}" / "libs"

    @property
    def kafka_installed(self) -> Path:
        """Written by scripts/stack.sh only after a complete download of the jars."""
        return self.cache / f"kafka-{self.kafka_version}" / ".installed"

    @property
    def log_dir(self) -> Path:
        return self.state / "logs"

    @property
    def marker(self) -> Path:
        """Proof that the state directory is ours, so `down --purge` may delete it."""
        return self.state / ".retention-stack"

    def service_dir(self, name: str) -> Path:
        """Configs and data of a service, and its working directory (see process.running_pid)."""
        return self.state / name

    def pid_file(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def exports(self) -> dict[str, str]:
        """The RETENTION_* variables of the stack's ports, addresses and places."""
        names = [
            *(f for f in Settings.model_fields if f.endswith("_port")),
            "kafka_bootstrap",
            "redis_url",
            "alertmanager_webhook_url",
            "redis_cluster_ports",
            "redis_cluster_bus_ports",
            "redis_sentinel_port",
            "redis_sentinel_service",
            "redis_secure_port",
            "redis_secure_tls_port",
            "kafka_version",
            "scrape_interval",
            "state",
            "cache",
        ]
        return {f"RETENTION_{name.upper()}": _text(getattr(self, name)) for name in names}


def _text(value: object) -> str:
    """A setting's value as its environment variable holds it (lists comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)
