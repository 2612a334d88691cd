"""`l2l optimizers tasks|presets`: the optimizer tasks (built in and from plugins) and the named optimizers
`l2l optimizers evaluate` takes."""

from __future__ import annotations

import typer

from l2l.runs.cli.common import console, err_console, user_errors
from l2l.runs.cli.optimizers import app


@app.command("tasks")
def optimizers_tasks() -> None:
    """List the optimizer tasks, one a line: the search and heldout suites and those of `l2l.optimizer_tasks`
    plugins (the user suite), with what each trains; a plugin that does not load, or a plugin task whose model
    and data do not make one loss (`check_task`), is named after them."""
    from rich.markup import escape

    with user_errors():
        from l2l.optsearch.suite import BUILTIN, SOURCES, TaskError, check_task, loaded_plugins, suite_of

        loaded, problems = loaded_plugins()
        broken = []
        for task in loaded.values():  # built once on two examples, as `optimizers evaluate` would before training
            try:
                check_task(task)
            except TaskError as exc:
                broken.append(f"{exc}; `l2l optimizers evaluate` refuses it")
        for name, task in {**BUILTIN, **loaded}.items():
            plugin = SOURCES.get(name, "built in").removeprefix("optimizer task plugin ")
            options = ", ".join(f"{k} {v}" for k, v in task.options)
            model = f"{task.model} ({options})" if options else task.model
            line = (
                f"[bold]{escape(name)}[/] ({suite_of(name)}): {escape(task.kind) + '; ' if task.kind else ''}"
                f"problem {escape(task.problem)}, "
                f"model {escape(model)}, loss {task.loss}, metric {task.metric}, {task.steps} steps of "
                f"{task.batch_size}; {escape(plugin)}"
            )
            console.print(line, highlight=False)
        for problem in problems:  # the tasks of the others are listed all the same
            err_console.print(f"[yellow]warning:[/] {escape(problem)}; its tasks are not listed", highlight=False)
        for problem in broken:
            err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
        if problems or broken:
            raise typer.Exit(1)


@app.command("presets")
def optimizers_presets() -> None:
    """List the named optimizers `l2l optimizers evaluate` takes, each as its rule and formula."""
    from rich.markup import escape
    from rich.table import Table

    with user_errors():
        from l2l.optsearch.language import to_formula
        from l2l.optsearch.presets import PRESETS, preset

        table = Table("preset", "formula", "rule")
        for name, text in PRESETS.items():
            table.add_row(name, escape(to_formula(preset(name))), escape(text))
        console.print(table)
