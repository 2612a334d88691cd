"""`l2l runs export`'s formats: every child of a run as CSV rows, or the run, children and updates as JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from l2l.runs.store import ChildRecord, RunRecord, UpdateRecord

# the child fields that are CSV columns as stored; test_acc, params, tokens and spec follow them
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


def export_csv(children: Sequence[ChildRecord]) -> str:
    """One row per child, for spreadsheets and pandas (nested metrics flattened to test_acc and params)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*EXPORT_COLUMNS, "test_acc", "params", "tokens", "spec"])
    for c in children:
        writer.writerow(
            [getattr(c, col) for col in EXPORT_COLUMNS]
            + [
                (c.metrics.get("test") or {}).get("test_acc"),
                (c.metrics.get("cost") or {}).get("params"),
                " ".join(str(t) for t in c.tokens),
                json.dumps(c.spec),
            ]
        )
    return buf.getvalue()


def export_json(run: RunRecord, children: Sequence[ChildRecord], updates: Sequence[UpdateRecord]) -> str:
    """Everything the store holds about a run, as one JSON document."""
    payload = {
        "run": dataclasses.asdict(run),
        "children": [dataclasses.asdict(c) for c in children],
        "updates": [dataclasses.asdict(u) for u in updates],
    }
    return json.dumps(payload, default=str, indent=2)
