"""Sample the worker with py-spy and summarise where its main thread's time goes.

`py-spy record --format raw --threads --idle --full-filenames` writes collapsed
stacks ("thread (tid): Name;frame;frame;... count", root first). Only the main
thread is summarised: it runs the event loop with the batch pipeline (Faust's
consumer thread and the metrics HTTP thread are idle or unrelated). Samples whose
innermost frame is the selector's poll are the loop waiting (for Redis, Kafka or
the next fetch). Self time is charged to the innermost frame and to its package;
inclusive time is given for the project's own functions (streams/, metrics/,
retention/). `Profiler` attaches py-spy to a worker at its first commit.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ROOT, VENV_BIN, Child
from bench.report import progress
from bench.worker import Worker

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
IDLE = "idle: event loop waiting (Redis, Kafka, timers)"
PROJECT = tuple(str(ROOT / p) + "/" for p in ("streams", "metrics", "retention"))


def py_spy() -> str | None:
    local = VENV_BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: int, rate: int = 100) -> Child | None:
    """Sample `pid` for `seconds` (non-blocking: the target is never paused)."""
    exe = py_spy()
    if exe is None:
        return None
    args = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    args += ["--rate", str(rate), "--duration", str(seconds)]
    args += ["--threads", "--idle", "--full-filenames", "--nonblocking"]
    return Child("py-spy", args, {}, out.with_suffix(".log"))


def finish(spy: Child, timeout: float) -> None:
    """Wait for py-spy to write its output (it stops by itself after --duration)."""
    try:
        spy.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        spy.stop(timeout=30, sig=signal.SIGINT)  # py-spy also writes its output on SIGINT


@dataclass(slots=True)
class Frame:
    func: str
    file: str

    @classmethod
    def parse(cls, text: str) -> Frame:
        m = FRAME.match(text.strip())
        if not m:
            return cls(text.strip(), "")
        return cls(m.group("func"), m.group("file"))

    @property
    def package(self) -> str:
        if "/site-packages/" in self.file:
            return self.file.split("/site-packages/", 1)[1].split("/", 1)[0]
        if self.file.startswith(str(ROOT) + "/"):
            return self.file[len(str(ROOT)) + 1 :].split("/", 1)[0] + "/"
        return "stdlib"

    @property
    def label(self) -> str:
        short = self.file
        if short.startswith(str(ROOT) + "/"):
            short = short[len(str(ROOT)) + 1 :]
        elif "/site-packages/" in short:
            short = short.split("/site-packages/", 1)[1]
        else:
            short = short.rsplit("/", 1)[-1]
        return f"{self.func} ({short})"

    @property
    def idle(self) -> bool:
        return self.func.endswith(("select", "poll")) and self.file.endswith("selectors.py")


@dataclass(slots=True)
class Profile:
    samples: int
    main_thread_samples: int
    idle_share: float
    by_package: list[tuple[str, float]]
    top_self: list[tuple[str, float]]
    top_inclusive: list[tuple[str, float]]
    threads: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        def rows(items: list[tuple[str, float]]) -> list[list[object]]:
            return [[name, round(share, 4)] for name, share in items]

        return {
            "samples": self.samples,
            "main_thread_samples": self.main_thread_samples,
            "idle_share": round(self.idle_share, 4),
            "by_package": rows(self.by_package),
            "top_self": rows(self.top_self),
            "top_inclusive": rows(self.top_inclusive),
            "threads": self.threads,
        }


def summarise(raw: Path, top: int = 15) -> Profile:
    """Shares are of the main thread's samples (idle included)."""
    self_time: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = main = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = parts[0].split(": ", 1)[-1] if parts[0].startswith("thread (") else "?"
        threads[thread] += count
        total += count
        if thread != "MainThread":
            continue
        frames = [Frame.parse(p) for p in parts[1:] if p]
        if not frames:
            continue
        main += count
        leaf = frames[-1]
        if leaf.idle:
            idle += count
            self_time[IDLE] += count
            packages[IDLE] += count
        else:
            self_time[leaf.label] += count
            packages[leaf.package] += count
        for label in {f.label for f in frames if f.file.startswith(PROJECT)}:
            inclusive[label] += count
    share = max(main, 1)
    return Profile(
        samples=total,
        main_thread_samples=main,
        idle_share=idle / share,
        by_package=[(n, c / share) for n, c in packages.most_common(10)],
        top_self=[(n, c / share) for n, c in self_time.most_common(top)],
        # entry points (the CLI command, run_worker) hold ~every sample: leave them out
        top_inclusive=[(n, c / share) for n, c in inclusive.most_common() if c < 0.9 * share][:top],
        threads=dict(threads),
    )


class Profiler:
    """py-spy attached to one worker at its first commit, and its summary afterwards."""

    def __init__(self, enabled: bool, seconds: int, workdir: Path) -> None:
        self.enabled, self.seconds = enabled, seconds
        self.raw = workdir / "worker-profile.txt"
        self.spy: Child | None = None

    def attach(self, worker: Worker) -> None:
        """Start sampling the worker (a `run_throughput` first-commit hook)."""
        if not self.enabled:
            return
        if py_spy() is None:
            progress.print("[yellow]py-spy not installed: no profile[/yellow]")
            return
        self.spy = start(worker.child.pid, self.raw, self.seconds)

    def collect(self, rate: float) -> dict[str, object] | None:
        """Wait for py-spy and summarise its samples (None if nothing was sampled)."""
        spy, self.spy = self.spy, None
        if spy is None:
            return None
        finish(spy, timeout=self.seconds + 60)
        if not self.raw.exists():
            progress.print(f"[yellow]py-spy wrote no profile[/yellow]\n{spy.tail()}")
            return None
        summary = summarise(self.raw).as_dict()
        summary["seconds"] = self.seconds
        summary["run_rate"] = round(rate, 1)
        progress.print(f"  profile: {summary['samples']:,} samples")
        return summary
