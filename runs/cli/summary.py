"""The closing lines of `l2l search`: what a run trained, what it found, and where to look next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from l2l.runs.cli.common import console, fail, most_common_failure, storage_flag
from l2l.runs.cli.formatting import parameter_free

if TYPE_CHECKING:
    from l2l.runs.store import Store
    from l2l.search_spaces import SearchSpace


def print_derived(store: Store, run: Any) -> None:
    """The last line of a weight-sharing search: the architecture it derived, and how to retrain it."""
    derived = store.children(run.run_id, "derived")
    shared = store.count_children(run.run_id).get("shared", 0)
    if derived:
        d = derived[0]
        share = parameter_free(d)
        figures = d.metrics.get("info", {}).get("shared") or {}
        metric = run.space.validation_metric
        val = figures.get(f"val_{metric}")  # what the space measures (bpc, perplexity), beside the reward
        how = (  # every candidate diverged: the reward is the run's failure reward, not a measurement
            f"every candidate diverged: reward {d.reward:.4f} is the failure reward"
            if figures.get("diverged")
            else f"validation reward {d.reward:.4f}" + (f", val {metric} {val:.4f}" if val is not None else "")
        )
        console.print(
            f"run {run.run_id} done: {run.ws.epochs} epoch{'s' * (run.ws.epochs != 1)}, {shared} architectures "
            "scored with the shared weights; "
            f"derived child {d.number} ({how} with shared weights"
            + (f", {share}" if share else "")
            + f"): {escape(run.space.describe(run.space.decode(d.tokens)))}. "
            f"Train it from scratch: `l2l runs best {run.run_id} --retrain{storage_flag(store)}`.",
            highlight=False,
        )


def print_summary(store: Store, run_id: int, space: SearchSpace | None = None) -> None:
    """The last line of `l2l search`: what was trained, the best architecture by estimated mean reward, and
    where to look next; a run in which no child succeeded ends the command with an error naming the most
    common failure."""
    from l2l.runs.estimates import rank

    counts = store.count_children(run_id)
    archs = rank(store.children(run_id), space).archs
    best = "no child finished"
    if archs and archs[0].estimate.n > 1:
        e = archs[0].estimate
        best = f"best estimated reward {e.estimate:.4f} over {e.n} evaluations (child {archs[0].child.number})"
    elif archs:
        e = archs[0].estimate  # evaluated once; pulled towards the crowd where the noise is known, as `runs list` shows
        once = f", estimated {e.estimate:.4f}" if round(e.estimate, 4) != round(e.mean, 4) else ""
        best = f"best reward {e.mean:.4f}{once} (child {archs[0].child.number})"
    group = "optimizers" if store.get_run(run_id).space == "optimizer" else "runs"
    where = storage_flag(store)
    see = f" See `l2l {group} top {run_id}{where}` and `l2l plot progress {run_id}{where} -o progress.png`."
    see = see if archs else ""
    console.print(
        f"run {run_id} {'done' if counts['done'] or not counts['failed'] else 'failed'}: {counts['done']} children "
        f"trained, {counts['failed']} failed; {best}.{see}",
        highlight=False,
    )
    if counts["done"] == 0 and counts["failed"] > 0:
        reason, n, _ = most_common_failure(c.error for c in store.children(run_id, "failed"))
        fail(f"no child of run {run_id} succeeded; the most common failure ({n} of {counts['failed']}): {reason}")


def start_notes(store: Store, config: Any, run_id: int) -> list[str]:
    """What a new run's settings mean that the user may not expect: a batch no proposal learns from, a name
    another run has (commands then need each one's id)."""
    notes = []
    learns = not config.strategy.startswith("random")  # random search learns nothing from its batches
    if config.weight_sharing is None and config.batch > config.children and learns:
        notes.append(
            f"batch {config.batch} is more than children {config.children}: the strategy learns only after the last "
            "child, so no proposal of this run uses what it learned; a smaller --batch lets it learn"
        )
    others = [i for i in store.run_ids_named(config.name) if i != run_id] if config.name else []
    if others:
        notes.append(
            f"run{'s' * (len(others) > 1)} {', '.join(map(str, others))} {'are' if len(others) > 1 else 'is'} named "
            f"{config.name!r} too: commands now need each one's id, not the name"
        )
    return notes
