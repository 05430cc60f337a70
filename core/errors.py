"""One exception type for commands that must stop with a message and a chosen exit code."""

from __future__ import annotations

# Exit codes shared by feed, simulate, report and status (documented in their --help).
EXIT_OK = 0
EXIT_PROBLEM = 1  # ran, but something needs attention: rejected rows, no data yet
EXIT_USAGE = 2  # bad input or options: nothing was done
EXIT_UNREACHABLE = 3  # Kafka, Redis or the exporter could not be reached


class CommandError(Exception):
    """Raised deep inside a command; the CLI prints `message` and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
