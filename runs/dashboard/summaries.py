"""What the runs table and a run page's header show of a run: its state, counts and duration, from its record
and its children counted by status (`l2l.runs.dashboard.reader.Reader` reads them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from l2l.runs.dashboard.series import planned
from l2l.runs.driver import ended_for_good, in_flight, run_state
from l2l.runs.store_records import RunRecord, iso

TRAINED = ("done",)  # children with a reward of their own training


# a weight-sharing run's statuses, as `l2l runs top` calls them: what the children list's filter offers
SHARING_STATUSES = {"shared": "scored while searching", "candidate": "derive candidate",
                    "derived": "the derived architecture", "done": "retrained from scratch"}  # fmt: skip
STATUSES = ("done", "failed", "running", "queued")


def child_statuses(summary: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(status, children of it, what it means) of every status the children list may be filtered by: those of
    the run's kind whether or not any child has them yet (a derived architecture comes at the end), then any
    other the run's children have."""
    counts = summary["counts"]
    known = [*SHARING_STATUSES, *STATUSES[1:]] if summary["weight_sharing"] else list(STATUSES)
    known += sorted(s for s in counts if s not in known)
    meaning = SHARING_STATUSES if summary["weight_sharing"] else {}
    return [(s, counts.get(s, 0), meaning.get(s, "")) for s in known]


def derive_note(counts: dict[str, int]) -> str:
    """What a weight-sharing run scored beyond its epochs' architectures: the derive candidates, one of them the
    derived architecture (the children list counts them all)."""
    n = counts.get("candidate", 0) + counts.get("derived", 0)
    if not n:
        return ""
    derived = " (1 of them derived)" if counts.get("derived") else ""
    retrained = f", then {counts['done']} retrained" if counts.get("done") else ""
    return f"then {n} derive candidate{'s' * (n != 1)} scored{derived}{retrained}"


def run_summary(run: RunRecord, counts: dict[str, int], best: float | None, flag: str = "") -> dict[str, Any]:
    """What the runs table and a run page's header show of a run (``flag``: the store's --storage, for hints)."""
    created = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
    state = run_state(run, storage=flag)
    # a stale run's driver is gone: it ran until the later of its last heartbeat and its last recorded update,
    # not until now (a driver killed between heartbeats showed "0 s" after 8 s of children and updates)
    beats = [t for t in (run.heartbeat_at, run.updated_at) if t is not None]
    silent = max(beats, key=lambda t: t if t.tzinfo else t.replace(tzinfo=UTC)) if state.startswith("stale") else None
    end = run.finished_at or (run.updated_at if run.status != "running" else silent)
    end_aware = None if end is None else (end if end.tzinfo else end.replace(tzinfo=UTC))
    ws = run.config.get("weight_sharing") is not None
    finished = state in ("done", "failed", "interrupted") or state.startswith("stale")
    return {
        "id": run.id,
        "name": run.name,
        "space": run.space,
        "strategy": run.strategy,
        "status": run.status,
        "state": state,
        "live": not finished,
        "seed": run.seed,
        "weight_sharing": ws,
        "total": run.n_children,
        "done": counts.get("done", 0),
        "failed": counts.get("failed", 0),
        "running": counts.get("running", 0),
        "in_flight": in_flight(run, counts.get("running", 0), state),  # as `l2l runs show` splits them
        "queued": counts.get("queued", 0),
        "shared": counts.get("shared", 0),
        "scored": counts.get("shared", 0) if ws else sum(counts.get(s, 0) for s in TRAINED),  # as the controller
        "planned": planned(run) if ws else run.n_children,  # what `scored` counts towards
        "derive_note": derive_note(counts) if ws else "",  # the children a weight-sharing run scored after its epochs
        "counts": counts,
        "best": best,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "duration_s": ((end_aware or datetime.now(UTC)) - created).total_seconds(),
        "error": run.error,
        "stopped_note": "" if not finished else stopped_note(run.id, state, flag, ended_for_good(run, counts)),
    }


def stopped_note(run_id: int, state: str, flag: str = "", ended: bool = False) -> str:
    """What a page says beside the state of a run that is not running: how to continue it where it can be, and
    nothing for a run that is done (it cannot be resumed); ``ended``: failed with every child recorded and none
    succeeding (`l2l.runs.driver.ended_for_good`)."""
    if state == "done":
        return ""
    if ended:
        return "every child recorded, none succeeded: nothing to resume"
    if state == "interrupted":
        return f"not running: continue it with l2l search --resume {run_id}{flag}"
    return "not running: nothing changes here unless it is resumed"
