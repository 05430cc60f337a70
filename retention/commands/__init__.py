"""One module per `retention` command; `retention.cli` assembles them into the typer app."""
