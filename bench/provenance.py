"""Where the figures came from: the machine, the git commit and a digest of the code.

Workers and the exporter are started along the way and load the tracker's code as
it is at that moment, so the digest is taken at the start and compared at the end.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from typing import Any

from bench.procs import ROOT, loadavg


def machine() -> dict[str, Any]:
    """CPUs, Python, platform, load, and the tracker's code version at the start."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": loadavg(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "streams", "metrics", "retention")),
        "code_digest": code_digest(),
    }


def code_digest() -> str:
    """A digest of the tracker's code (streams/, metrics/, retention/), to spot edits mid-run."""
    h = hashlib.sha256()
    for package in ("streams", "metrics", "retention"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix in (".py", ".lua"):
                h.update(path.name.encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]
