"""Child processes (worker, exporter, naive agent, limit, py-spy) and CPU accounting.

Every child runs in a session of its own and is stopped through its process group,
so the benchmark only ever signals what it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A started process, its log file, and a clean way to stop it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return f"--- last lines of {self.log} ---\n" + "\n".join(text[-lines:])

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
        if not self.alive():
            return
        self.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.popen.wait(10)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of one process (0 if it is gone or unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def pid_from_file(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float
    busy: float
    total: float
    procs: dict[str, float]


class CpuMeter:
    """CPU used by named processes and by the whole machine between two samples."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids

    def sample(self) -> CpuSample:
        busy, total = machine_busy_seconds()
        procs = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return CpuSample(time.monotonic(), busy, total, procs)

    @staticmethod
    def share(a: CpuSample, b: CpuSample) -> dict[str, float]:
        """Cores used per process over [a, b], plus the machine and everything else."""
        wall = max(b.at - a.at, 1e-9)
        out = {name: (b.procs[name] - a.procs[name]) / wall for name in a.procs}
        machine = (b.busy - a.busy) / wall
        out["machine"] = machine
        out["others"] = machine - sum(v for k, v in out.items() if k != "machine")
        return {k: round(v, 2) for k, v in out.items()}


def tcp_ports_to(pid: int, remote_port: int) -> set[int]:
    """The local ports of a process's TCP connections to `remote_port` (read from /proc)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                sockets.add(link[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, inode = (line.split()[i] for i in (1, 2, 9))
            if inode in sockets and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_private_redis(
    workdir: Path, config: dict[str, str], timeout: float = 20.0
) -> tuple[Child, str]:
    """A redis-server of our own: no persistence, loopback, plus `config` (the encoding
    thresholds copied from the stack's Redis, so customer hashes are encoded alike)."""
    port = free_port()
    child = _redis_server("redis", workdir / "redis", port, config)
    _wait_ready(child, port, b"PING", b"+PONG", timeout)
    return child, f"redis://127.0.0.1:{port}/0"


def start_private_cluster(
    workdir: Path, config: dict[str, str], masters: int = 3, timeout: float = 30.0
) -> tuple[list[Child], str]:
    """A Redis Cluster of our own: `masters` redis-servers in cluster mode (no replicas,
    no persistence, loopback, `config` as for start_private_redis), slots spread by
    `redis-cli --cluster create`; returns the nodes and the redis+cluster:// seed URL."""
    ports = [free_port() for _ in range(masters)]
    nodes = []
    for n, port in enumerate(ports):
        cluster = {"cluster-enabled": "yes", "cluster-port": str(free_port())}
        cluster["cluster-config-file"] = str(workdir / f"cluster-{n}" / "nodes.conf")
        nodes.append(_redis_server(f"redis-{n}", workdir / f"cluster-{n}", port, config | cluster))
    try:
        for node, port in zip(nodes, ports, strict=True):
            _wait_ready(node, port, b"PING", b"+PONG", timeout)
        addresses = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            ["/usr/bin/redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        for node, port in zip(nodes, ports, strict=True):
            _wait_ready(node, port, b"CLUSTER INFO", b"cluster_state:ok", timeout, read=256)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes, "redis+cluster://" + ",".join(addresses)


def _redis_server(name: str, data: Path, port: int, config: dict[str, str]) -> Child:
    data.mkdir(parents=True, exist_ok=True)
    args = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(data)]
    for option, value in config.items():
        args += [f"--{option}", value]
    return Child(name, args, {}, data.parent / f"{name}.log")


def _wait_ready(
    child: Child, port: int, command: bytes, reply: bytes, timeout: float, read: int = 16
) -> None:
    """Until the server answers `command` with a reply containing `reply`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(command + b"\r\n")
                if reply in s.recv(read):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    child.stop()
    raise TimeoutError(f"private redis-server on port {port} did not answer {command!r}")
