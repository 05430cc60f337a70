"""Start, recognise and stop the stack's server processes, and keep two stacks apart.

A pid only counts as the stack's while that process is alive and its working directory
is the service's directory (every service is started there). That survives pid reuse
after a crash or a reboot; the command line cannot be used because Redis rewrites its
process title.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from retention.stack.settings import StackError, StackSettings

LOCK_TIMEOUT = 300.0


def say(message: str) -> None:
    print(f"stack: {message}", flush=True)


def running_pid(stack: StackSettings, name: str) -> int | None:
    """The pid of the stack's running `name`, or None."""
    try:
        pid = int(stack.pid_file(name).read_text().strip())
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return None
    return pid if Path(cwd) == stack.service_dir(name) else None


def spawn(stack: StackSettings, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    """Start `args` in the service directory, detached: its own session, no stdin, output
    to the service's log; it outlives this command. Records its pid."""
    with stack.log_file(name).open("ab") as log:
        child = subprocess.Popen(
            args,
            cwd=stack.service_dir(name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.pid_file(name).write_text(f"{child.pid}\n")
    return child


def stop(stack: StackSettings, name: str) -> int | None:
    """SIGTERM, then SIGKILL after the stop timeout; the pid that was stopped, if any."""
    pid = running_pid(stack, name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _gone(pid, stack.stack_stop_timeout):
            say(f"{name} (pid {pid}) ignored SIGTERM, sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            _gone(pid, float("inf"))
    stack.pid_file(name).unlink(missing_ok=True)
    return pid


def _gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (or is a zombie of ours); False if still there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if this command started it
        if not Path(f"/proc/{pid}/cwd").exists():
            return True
        time.sleep(0.1)
    return False


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def check_ports_free(stack: StackSettings, name: str) -> None:
    """Fail before starting when something else already listens on one of the ports."""
    for port in stack.service(name).ports:
        if port_in_use(port):
            raise StackError(
                f"{name}: port {port} on 127.0.0.1 is in use by something the stack did not "
                f"start{_listener(port)}\nStop it, or choose other ports (RETENTION_*_PORT)."
            )


def _listener(port: int) -> str:
    """Who listens on `port`, as `ss` tells, if it is installed."""
    if shutil.which("ss") is None:
        return ""
    done = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return f":\n{done.stdout.strip()}" if done.stdout.strip() else ""


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log, framed, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    body = "\n".join(text[-lines:])
    return f"----- last {lines} lines of {path} -----\n{body}\n-----"


@contextlib.contextmanager
def state_lock(stack: StackSettings) -> Iterator[None]:
    """One stack command at a time per state directory (two test sessions starting at
    once). The same file lock flock(1) takes, held until the command ends."""
    with (stack.state / ".lock").open("w") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(f"another stack command holds {handle.name}") from None
                time.sleep(0.2)
        yield
