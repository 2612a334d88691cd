"""`l2l strategies list`: the strategies `--strategy` takes, built in and from plugins, with their default batch."""

from __future__ import annotations

import typer

from l2l.runs.cli.common import console, user_errors

app = typer.Typer(help="The search strategies (controllers) and the plugins that add them.", no_args_is_help=True)

# one line each for the table; the reference is docs/controllers.md
ABOUT = {
    "reinforce": "an LSTM controller trained with REINFORCE (Zoph & Le)",
    "ppo": "the LSTM controller trained with PPO (NASNet)",
    "random": "uniform random sampling",
    "evolution": "regularized (aging) evolution (Real et al.)",
    "tpe": "Optuna's TPE sampler",
    "gp": "Optuna's Gaussian-process sampler",
    "qmc": "Optuna's quasi-Monte-Carlo sampler",
}


@app.command("list")
def strategies_list() -> None:
    """List the strategies: built in and from `l2l.strategies` plugins (each also as STRATEGY+screen,
    STRATEGY+reeval and STRATEGY+screen+reeval)."""
    from rich.markup import escape
    from rich.table import Table

    with user_errors():
        from l2l.controllers import DEFAULT_BATCH, DEFAULT_STRATEGY, STRATEGIES, ControllerError, default_batch
        from l2l.controllers.plugins import ENTRY_POINT_GROUP, plugin_about, plugin_names, shadowed

        table = Table("name", "from", "default batch", "what")
        for name in STRATEGIES:
            table.add_row(name, "built in", str(DEFAULT_BATCH[name]), ABOUT.get(name, ""))
        for name in plugin_names(list(STRATEGIES)):
            try:
                batch = str(default_batch(name))  # loads it: a plugin that does not load is said below
                table.add_row(name, f"plugin ({ENTRY_POINT_GROUP})", batch, escape(plugin_about(name)))
            except ControllerError as exc:  # a plugin that does not load: its reason, the others still listed
                table.add_row(name, f"plugin ({ENTRY_POINT_GROUP})", "-", f"[red]cannot load: {escape(str(exc))}[/]")
        console.print(table)
        for entry in shadowed(list(STRATEGIES)):  # `--strategy NAME` runs the built-in: say why the plugin is not
            console.print(
                f"[yellow]note: the plugin strategy {escape(entry)} ({ENTRY_POINT_GROUP}) is not used: a built-in "
                "strategy has its name; rename its entry point[/]",
                highlight=False,
            )
        console.print(
            f"default: {DEFAULT_STRATEGY}. Each also as STRATEGY+screen (a surrogate picks its proposals), "
            "STRATEGY+reeval (the best architectures evaluated again under noise) and STRATEGY+screen+reeval.",
            highlight=False,
        )
