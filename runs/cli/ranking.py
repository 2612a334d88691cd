"""How `l2l runs` shows architectures ranked by their estimated mean reward (`l2l.runs.estimates`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from l2l.runs.config import UsageError

if TYPE_CHECKING:
    from l2l.runs.estimates import RankedArch
    from l2l.runs.store import ChildRecord, RunRecord, Store
    from l2l.search_spaces import SearchSpace


ByOpt = Annotated[
    str,
    typer.Option(
        "--by",
        help="mean: rank architectures by their estimated mean reward over every evaluation; transformed: the "
        "same with the reward the controller learned from (a run with -C reward_transform=...); single: rank "
        "children by their one reward.",
    ),
]
RANKINGS = ("mean", "transformed", "single")


def check_by(by: str) -> None:
    if by not in RANKINGS:
        raise UsageError(f"--by must be one of {', '.join(RANKINGS)}; got {by!r}")


def transform_note(run: RunRecord, by: str) -> str | None:
    """Where a run's controller learned from a transformed reward (and re-evaluated by it), which reward the
    ranking used and how to get the other."""
    transform = str((run.config.get("controller") or {}).get("reward_transform", "reward"))
    if transform == "reward" or by == "single":
        return None
    if by == "transformed":
        return f"ranked by the reward the controller learned from, {transform}"
    return f"ranked by the raw reward; the controller learned from {transform} (--by transformed ranks by it)"


def ranked_space(run: RunRecord) -> SearchSpace | None:
    """The run's space for grouping its children by architecture, or None when it cannot be rebuilt."""
    from l2l.search_spaces import SpaceError, load_space

    try:
        return load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
    except SpaceError:
        return None


def estimate_text(arch: RankedArch) -> str:
    """``estimate ± half-width (n evaluations)`` of one architecture."""
    from l2l.runs.estimates import half_width

    pm = half_width(arch.estimate)
    return f"{arch.estimate.estimate:.4f}" + (f" ± {pm:.4f}" if pm is not None else "")


def mean_metrics(children: Sequence[ChildRecord]) -> dict[str, Any]:
    """The validation, test and cost figures of an architecture's evaluations, each the mean over them."""
    out: dict[str, Any] = {}
    for key in ("val_acc", "val_loss"):
        vals = [getattr(c, key) for c in children if getattr(c, key) is not None]
        if vals:
            out[key] = sum(vals) / len(vals)
    for part in ("test", "cost"):
        sums: dict[str, list[float]] = {}
        for c in children:
            for key, value in (c.metrics.get(part) or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    sums.setdefault(key, []).append(float(value))
        out[part] = {key: sum(v) / len(v) for key, v in sums.items()}
    info = children[0].metrics.get("info") or {}
    out["info"] = info
    return out


def sharing_top(store: Store, run_id: int, k: int) -> list[ChildRecord]:
    """A weight-sharing run's ``k`` best children as `l2l runs top` lists them: retrained from scratch first,
    then the derived architecture and the candidates by their shared-weight score; before it derived, the
    architectures its controller scored."""
    scored = store.children(run_id, "derived") + store.children(run_id, "candidate")
    top = store.top_children(run_id, k) + scored
    if not top:  # stopped before it derived: the architectures its controller scored, so far
        top = store.children(run_id, "shared")
    return sorted(top, key=lambda c: (c.status != "done", c.reward is None, -(c.reward or 0.0)))[:k]


def sharing_role(child: ChildRecord, retrained: list[ChildRecord]) -> str:
    """What a weight-sharing run's child in `l2l runs top` is, so one architecture listed twice (derived, and
    retrained from scratch) reads as one: the retrained row names its derived child and the other way round
    (``retrained``: the run's finished children)."""
    origin = (child.metrics.get("info") or {}).get("retrained_from")
    if child.status == "done":
        how = (child.metrics.get("info") or {}).get("retrained_with") or {}
        with_ = f" ({', '.join(f'{k} {v}' for k, v in how.items())})" if isinstance(how, dict) and how else ""
        return f"retrained from child {origin}{with_}" if origin is not None else "trained"
    if child.status != "derived":
        return {"candidate": "derive candidate", "shared": "scored while searching"}.get(child.status, child.status)
    again = [str(c.number) for c in retrained if (c.metrics.get("info") or {}).get("retrained_from") == child.number]
    return f"derived, retrained as child {', '.join(again)}" if again else "derived"
