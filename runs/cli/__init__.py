"""The `l2l` command line (Typer + Rich), one module per command group.

Heavy modules (torch, SQLAlchemy, matplotlib) are imported inside commands, so `l2l --help` answers at once.
Settings merging lives in `l2l.runs.config`, which scripts import instead of the CLI.
"""

from __future__ import annotations

import typer

from l2l.runs.cli import catalog, child, db, listing, optimizers, plot, runs, spaces, strategies  # noqa: F401
from l2l.runs.cli.common import error_line
from l2l.runs.cli.dashboard import dashboard
from l2l.runs.cli.search import search

app = typer.Typer(
    name="l2l",
    help="Learning to learn: search neural architectures and optimizer update rules with an RNN controller.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(search)
app.command()(dashboard)
app.add_typer(spaces.app, name="spaces")
app.add_typer(strategies.app, name="strategies")
app.add_typer(runs.app, name="runs")
app.add_typer(plot.app, name="plot")
app.add_typer(optimizers.app, name="optimizers")
app.add_typer(db.app, name="db")


def main() -> None:
    """Console-script entry point: a mistake on the command line (an unknown flag, a value out of range) is
    one ``error:`` line with click's suggestion and the command's help to read, like every other mistake."""
    import sys

    try:  # Typer 0.2x carries its own copy of click, whose errors are not click's
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - older Typer uses click itself
        from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef,attr-defined,assignment]

    from l2l.runs.cli.common import widen_for_pipes

    widen_for_pipes()
    try:
        code = app(standalone_mode=False, prog_name="l2l")
    except NoArgsIsHelpError as exc:  # `l2l spaces` alone: the group's help, once
        # The error's message is the help text; with Rich formatting, building it already printed it.
        if exc.format_message():
            print(exc.format_message())
        code = 0
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "l2l"
        message = " ".join(exc.format_message().split())
        code = error_line(f"{message} (see: {where} --help)", exc.exit_code)
    except typer.Abort:
        code = error_line("aborted", 1)
    except typer.Exit as exc:
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
