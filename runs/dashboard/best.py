"""A run's best as the dashboard's runs table and run page show it: what `l2l runs best` names, said the way it
says it (the plain reward of an architecture evaluated once, the estimated mean and its 95% interval of one
evaluated more than once; a weight-sharing run's retrained, else derived, architecture)."""

from __future__ import annotations

from typing import Any

from l2l.runs.dashboard import figures
from l2l.runs.dashboard.reader import Reader
from l2l.runs.estimates import Keyed, best_arch, half_width


def evaluations(reader: Reader, charts: figures.Cache, run_id: int, done: int) -> Keyed:
    """A plain run's finished children (`Reader.evaluations`) keyed by architecture, read once for every chart that
    groups them so (the best, its curve, the Pareto front): keyed by how many finished, since a finished child
    never changes. A run of 100,000 children takes a fifth of a second to read."""

    def read() -> Keyed:
        space, _ = figures.space_of(reader.run(run_id))  # its canonical form groups the evaluations
        return Keyed.of(reader.evaluations(run_id), space)

    return charts.get(("evaluations", run_id, done), read)  # type: ignore[no-any-return]


def best_of(reader: Reader, charts: figures.Cache, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with its best as `l2l runs best` names it: ``best`` (the figure), ``best_child``, ``best_label``
    (what the figure is), and where it is an estimated mean ``best_estimated``, ``best_n`` (evaluations) and
    ``best_pm`` (half its 95% interval; None while the noise is unknown)."""
    if summary["weight_sharing"]:
        return _sharing_best(reader, summary)
    plain = {**summary, "best_estimated": False, "best_label": "best reward", "best_pm": None}
    if not summary["done"]:
        return plain
    run_id = summary["id"]

    def make() -> tuple[float, float, float | None, int, int, bool] | None:
        space, _ = figures.space_of(reader.run(run_id))  # whether its rewards are exact
        found = best_arch(evaluations(reader, charts, run_id, summary["done"]), space)
        if found is None:
            return None
        e, child, repeated = found
        return e.estimate, e.mean, half_width(e), child, e.n, repeated

    # finished children's rewards never change: their count keys the estimate, without another query
    found = charts.get(("best", run_id, summary["done"]), make)
    if found is None or not found[5]:  # no architecture evaluated twice: the best reward is what runs best names
        return plain
    estimate, mean, pm, child, n, _ = found
    if n == 1:  # evaluated once: its reward, as `l2l runs best` gives it (the estimate beside it on the best line)
        # another architecture may have a higher single reward: this one is the best by estimated mean
        return {**plain, "best": mean, "best_child": child, "best_once": estimate,
                "best_label": "reward of the best architecture (evaluated once)"}  # fmt: skip
    label = f"best estimated mean{' ± 95%' if pm is not None else ''} ({n} evaluations)"
    return {**summary, "best": estimate, "best_child": child, "best_n": n, "best_pm": pm, "best_estimated": True,
            "best_label": label}  # fmt: skip


def _sharing_best(reader: Reader, summary: dict[str, Any]) -> dict[str, Any]:
    """What `runs list` shows of a weight-sharing run: its retrained architecture, else its derived one."""
    run = reader.run(summary["id"])
    stood = reader.top(run, 1, ("done",)) or reader.top(run, 1, ("derived",))
    if not stood:
        return {**summary, "best_estimated": False, "best_label": "best reward", "best_pm": None}
    label = (
        "retrained from scratch" if stood[0].status == "done" else "derived (shared weights, whole validation split)"
    )
    return {**summary, "best": stood[0].reward, "best_child": stood[0].number, "best_estimated": False,
            "best_label": f"best: {label}", "best_pm": None,
            "best_shared": stood[0].status != "done"}  # fmt: skip  # as `runs list` marks it: "0.3389 shared"
