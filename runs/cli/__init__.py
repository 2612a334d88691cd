"""The `l2l` command line (Typer + Rich), one module per command group.

Heavy modules (torch, SQLAlchemy, matplotlib) are imported inside commands, so `l2l --help` answers at once.
Settings merging lives in `l2l.runs.config`, which scripts import instead of the CLI.
"""

from __future__ import annotations

import typer

from l2l.runs.cli import optimizers, plot, runs, spaces
from l2l.runs.cli.search import search

app = typer.Typer(
    name="l2l",
    help="Learning to learn: search neural architectures and optimizer update rules with an RNN controller.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(search)
app.add_typer(spaces.app, name="spaces")
app.add_typer(runs.app, name="runs")
app.add_typer(plot.app, name="plot")
app.add_typer(optimizers.app, name="optimizers")


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
