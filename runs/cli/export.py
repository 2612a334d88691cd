"""`l2l runs export`'s formats: every child of a run as CSV rows, or the run, children and updates as JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2l.runs.cli.common import first_line

if TYPE_CHECKING:
    from l2l.runs.store import ChildRecord, EpochRecord, RunRecord, UpdateRecord

# the child fields that are CSV columns as stored; test metrics, costs, tokens and spec follow them
EXPORT_COLUMNS = (
    "number",
    "batch",
    "status",
    "reward",
    "controller_reward",
    "val_loss",
    "val_acc",
    "policy_version",
    "log_prob",
    "entropy",
    "attempts",
    "wall_time",
    "worker",
    "device",
    "error",
)
FORMATS = ("csv", "json")


def format_of(output: Path | None, given: str | None) -> str:
    """The export's format: ``--format``, else the output file's suffix (csv without a file or a suffix); a
    suffix that is neither is refused rather than written as CSV."""
    from l2l.runs.config import UsageError

    if given is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        if suffix and suffix not in FORMATS:
            raise UsageError(f"cannot tell the format of {str(output)!r}: name it .csv or .json, or pass --format")
        given = suffix or "csv"
    if given not in FORMATS:
        raise UsageError(f"--format must be csv or json, got {given!r}")
    return given


def export_csv(
    children: Sequence[ChildRecord], tests: Sequence[str] = (), costs: Sequence[str] = (), validation: str = "acc"
) -> str:
    """One row per child, for spreadsheets and pandas: the stored fields (``error``: the one-line reason; the
    traceback is in the JSON export), the validation metric a space keeps in ``info`` (``val_bpc``,
    ``val_ppl``: ``validation``) where one does, then one column per test metric (named as the space names it)
    and per cost (``cost_<name>``), then the space's ``info`` (JSON), tokens and spec. ``tests`` and ``costs``
    name the metrics (a `MetricView`'s, declared by the space); empty: those the results hold."""
    kept = f"val_{validation}"
    own = [kept] if any(kept in (c.metrics.get("info") or {}) for c in children) and kept not in EXPORT_COLUMNS else []
    tests = list(tests) or metric_keys(children, "test")
    costs = list(costs) or metric_keys(children, "cost")
    taken = set(EXPORT_COLUMNS) | {"tokens", "spec"}
    test_columns = [k if k not in taken else f"test.{k}" for k in tests]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*EXPORT_COLUMNS, *own, *test_columns, *(f"cost_{k}" for k in costs), "info", "tokens", "spec"])
    for c in children:
        test, cost = c.metrics.get("test") or {}, c.metrics.get("cost") or {}
        writer.writerow(
            [getattr(c, col) if col != "error" else first_line(c.error) if c.error else None for col in EXPORT_COLUMNS]
            + [(c.metrics.get("info") or {}).get(k) for k in own]
            + [test.get(k) for k in tests]
            + [cost.get(k) for k in costs]
            + [json.dumps(c.metrics.get("info") or {}, sort_keys=True), " ".join(str(t) for t in c.tokens)]
            + [json.dumps(c.spec)]
        )
    return buf.getvalue()


def metric_keys(children: Sequence[ChildRecord], part: str) -> list[str]:
    seen: dict[str, None] = {}
    for c in children:
        seen.update(dict.fromkeys(c.metrics.get(part) or {}))
    return list(seen)


def export_json(
    run: RunRecord,
    children: Sequence[ChildRecord],
    updates: Sequence[UpdateRecord],
    epochs: Sequence[EpochRecord] = (),
) -> str:
    """Everything the store holds about a run, as one JSON document; a weight-sharing run's ``epochs`` (the
    shared weights' loss, mean reward and entropy of each) too."""
    payload = {
        "run": dataclasses.asdict(run),
        "children": [dataclasses.asdict(c) for c in children],
        "updates": [dataclasses.asdict(u) for u in updates],
    }
    if run.config.get("weight_sharing") is not None:
        payload["epochs"] = [dataclasses.asdict(e) for e in epochs]
    return json.dumps(payload, default=_plain, indent=2)


def _plain(value: Any) -> Any:
    """What JSON does not hold: a time in ISO 8601 UTC, the same from SQLite and PostgreSQL (`iso`)."""
    from datetime import datetime

    from l2l.runs.store_records import iso

    return iso(value) if isinstance(value, datetime) else str(value)
