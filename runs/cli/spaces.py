"""`l2l spaces list|show`: the registered search spaces and what one of them decides."""

from __future__ import annotations

import inspect
import math
from typing import Annotated, Any

import typer

from l2l.runs.cli.common import SpaceOptionOpt, console, user_errors
from l2l.runs.config import parse_assignments

app = typer.Typer(help="List and inspect search spaces.", no_args_is_help=True)


@app.command("list")
def spaces_list() -> None:
    """List the registered search spaces."""
    from rich.table import Table

    with user_errors():
        from rich.markup import escape

        from l2l.search_spaces import available_spaces, load_space_class
        from l2l.search_spaces.registry import shadowed

        table = Table("name", "description")
        for space_name in available_spaces():
            try:
                table.add_row(space_name, load_space_class(space_name).description)
            except ValueError as exc:
                table.add_row(space_name, f"[red]cannot load: {escape(str(exc))}[/]")
        for space_name, value in shadowed():
            table.add_row(space_name, f"[red]plugin {escape(value)} is not used: {space_name!r} is a built-in space[/]")
        console.print(table)


@app.command("show")
def spaces_show(
    space: Annotated[str, typer.Argument(metavar="SPACE", help="Name or path/to/file.py:Class.")],
    space_option: SpaceOptionOpt = None,
) -> None:
    """Show a space's decisions, the number of tokens and the number of candidates."""
    from rich.table import Table

    with user_errors():
        from l2l.search_spaces import SpaceError, load_space
        from l2l.search_spaces.constraints import Constraints

        sp = load_space(space, parse_assignments(space_option or [], "--space-option"))
        ignored = sp.ignored_options()
        if ignored:  # as a new run refuses them
            raise SpaceError(f"search space {sp.name!r}: {'; '.join(ignored)}")
        decisions = list(sp.decisions())
        size = 1
        table = Table("#", "decision", "kind", "choices")
        for i, d in enumerate(decisions):
            if d.kind == "categorical":
                size *= d.n_choices
                table.add_row(str(i), d.name, d.kind, ", ".join(map(str, d.options)))
            else:
                size *= 2**d.n_prev
                table.add_row(str(i), d.name, d.kind, f"any subset of {d.n_prev} earlier layers")
        doc = inspect.cleandoc(type(sp).__doc__ or "").replace("``", "`")  # docstrings are reST; this is a terminal
        options = {**_defaults(sp), **sp.options}
        title = f"[bold]{sp.name}[/]: {sp.description}" if sp.description else f"[bold]{sp.name}[/]"
        console.print(f"{title}\n{doc}\noptions: {options}", highlight=False)
        console.print(table)
        tokens = sum(d.width for d in decisions)
        line = f"{tokens} tokens, {_many(size, 'candidates')}"
        constraints = Constraints.of(sp)
        if constraints is not None and constraints.canonical_form:
            allowed = Constraints(constraints.sizes, constraints.clauses).count() if constraints.clauses else size
            line = f"{tokens} tokens, {_many(size, 'token sequences')}"
            line += f" ({_many(allowed, 'allowed')})" if allowed < size else ""
            if constraints.enumerated:
                line += f", {_many(constraints.count(), 'architectures')}"
            else:
                line += "; fewer architectures (sequences building one count once; too many to enumerate)"
        elif constraints is not None:
            kept, every = _many(constraints.count(), "candidates"), _many(size, "with the forbidden ones")
            line = f"{tokens} tokens, {kept} ({every})"
        for combination in sp.forbidden():
            console.print("forbidden: " + ", ".join(f"{k}={v}" for k, v in combination.items()), highlight=False)
        console.print(line, highlight=False)
        console.print(f"weight sharing: {_sharing(sp, space)}", highlight=False)
        costs = ", ".join(sp.cost_metrics) or (
            "none declared (SearchSpace.cost_metrics); a cost-aware reward or plot pareto reads what children report"
        )
        console.print(f"costs each child reports: {costs}", highlight=False)


def _many(n: int, noun: str) -> str:
    """``n`` and ``noun``: in full up to a quadrillion, beyond as a power of ten (a space of 100,000 decisions
    counts past the digits Python will print); ``noun`` plural, singular for one."""
    if n < 10**15:
        return f"{n:,} {noun.rstrip('s') if n == 1 else noun}"
    exponent = math.floor(math.log10(n))
    mantissa = round(10 ** (math.log10(n) - exponent), 1)
    exponent, mantissa = (exponent + 1, 1.0) if mantissa >= 10 else (exponent, mantissa)  # 9.97e15: 1.0e16
    return f"about {mantissa:.1f}e{exponent} {noun}"


def _defaults(sp: Any) -> dict[str, Any]:
    """The options ``sp``'s constructor has defaults for (a space may store only those that differ, as
    `nb201` keeps its stored options short), so `spaces show` names every option a user can set."""
    try:
        params = inspect.signature(type(sp)).parameters.values()
    except (TypeError, ValueError):
        return {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in params if p.kind in named and p.default is not p.empty}


def _sharing(sp: Any, ref: str) -> str:
    """Whether ``l2l search --weight-sharing`` can search the space, and why not where it says so (``ref``: the
    space as the user named it, a file plugin's path:Class included, so the command shown works)."""
    from l2l.search_spaces import SpaceError

    try:
        network = sp.shared_network()
    except SpaceError as exc:
        return f"no ({exc})"
    except Exception as exc:  # a plugin's shared network that cannot be made
        return f"no (shared_network() failed: {type(exc).__name__}: {exc})"
    return "no" if network is None else f"yes (l2l search --space {ref} --weight-sharing)"
