"""The `retention` command: one typer app with one module per command
(retention/commands/), so each command's options and helpers sit in a file of their own."""

from __future__ import annotations

import typer

from retention.commands import demo, exporter, feed, rebuild, report, simulate, stack, status
from retention.commands import worker as worker_command

app = typer.Typer(
    help="Real-time retention and churn tracking: Kafka events in, exact metrics out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(worker_command.worker)
app.command()(exporter.exporter)
app.command(help=feed.HELP, epilog=feed.EPILOG)(feed.feed)
app.command(help=simulate.HELP, epilog=simulate.EPILOG)(simulate.simulate)
app.command()(demo.demo)
app.command(help=report.HELP, epilog=report.EPILOG)(report.report)
app.command(epilog=status.EPILOG)(status.status)
app.command(epilog=rebuild.EPILOG)(rebuild.rebuild)
app.add_typer(stack.stack_app, name="stack")
