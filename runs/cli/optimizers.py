"""`l2l optimizers top|export`: the update rules an optimizer search found."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from l2l.runs.cli.common import RunArg, StorageOpt, console, open_store, user_errors
from l2l.runs.cli.formatting import fmt
from l2l.runs.config import UsageError

if TYPE_CHECKING:
    from l2l.optsearch.language import Rule
    from l2l.runs.store import ChildRecord, Store

app = typer.Typer(help="The update rules an optimizer search found.", no_args_is_help=True)


def best_rules(store: Store, run_id: int, k: int) -> list[tuple[ChildRecord, Rule]]:
    """The ``k`` best distinct rules of an optimizer-search run, with the best child that wrote each."""
    from l2l.search_spaces import SpaceError, Spec, load_space

    run = store.get_run(run_id)
    try:
        space = load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
    except SpaceError as exc:
        raise UsageError(f"cannot rebuild the space of run {run_id}: {exc}") from None
    rule_of = getattr(space, "rule_of", None)
    if rule_of is None:
        raise UsageError(f"run {run_id} searched the space {run.space!r}, not optimizer rules (use --space optimizer)")
    from l2l.optsearch.language import to_formula

    children = store.top_children(run_id, 10 * k)
    if not children:
        raise UsageError(f"run {run_id} has no finished child yet")
    out: list[tuple[ChildRecord, Rule]] = []
    formulas: set[str] = set()
    for c in children:  # rules that differ only in dead tokens (op2 under keep, ...) are the same rule
        rule = rule_of(Spec.from_json(c.spec))
        if to_formula(rule) not in formulas and len(out) < k:
            formulas.add(to_formula(rule))
            out.append((c, rule))
    return out


@app.command("top")
def optimizers_top(
    run_id: RunArg,
    k: Annotated[int, typer.Option("-k", help="How many rules.", min=1)] = 5,
    latex: Annotated[bool, typer.Option("--latex", help="Print formulas as LaTeX.")] = False,
    storage: StorageOpt = None,
) -> None:
    """The best rules of a run as formulas, with their rewards."""
    from rich.table import Table

    from l2l.optsearch.language import to_formula, to_latex, to_text

    with user_errors():
        store = open_store(storage)
        table = Table("rank", "child", "reward", "test acc", "best lr", "update", "rule")
        for rank, (c, rule) in enumerate(best_rules(store, run_id, k), start=1):
            info = c.metrics.get("info") or {}
            table.add_row(
                str(rank),
                str(c.number),
                fmt(c.reward),
                fmt((c.metrics.get("test") or {}).get("test_acc")),
                f"{info['best_lr']:g}" if "best_lr" in info else "-",
                to_latex(rule) if latex else to_formula(rule),
                to_text(rule),
            )
        console.print(table)


@app.command("export")
def optimizers_export(
    run_id: RunArg,
    rank: Annotated[int, typer.Option("--rank", help="Which rule: 1 is the best.", min=1)] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Python file to write.")] = None,
    name: Annotated[str, typer.Option("--name", help="Class name of the optimizer.")] = "DiscoveredOptimizer",
    storage: StorageOpt = None,
) -> None:
    """Write a Python file defining the rule's optimizer class; it needs PyTorch only, not l2l."""
    from l2l.optsearch.export import export_source

    with user_errors():
        if not name.isidentifier():
            raise UsageError(f"--name must be a Python identifier, got {name!r}")
        store = open_store(storage)
        ranked = best_rules(store, run_id, rank)
        if len(ranked) < rank:
            raise UsageError(f"run {run_id} has only {len(ranked)} finished children; --rank {rank} does not exist")
        child, rule = ranked[rank - 1]
        lr = float((child.metrics.get("info") or {}).get("best_lr", 1e-3))
        path = output or Path(f"run{run_id}_rank{rank}_optimizer.py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(export_source(rule, class_name=name, lr=lr, module=path.stem))
        console.print(f"wrote {path}: class {name}, rule of child {child.number} (reward {fmt(child.reward)})")
