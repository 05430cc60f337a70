"""Allow `python -m retention`."""

from retention.cli import app

app()
