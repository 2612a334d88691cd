"""Helpers shared by the benchmark scripts: a throwaway store, tables, and JSON output."""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import ChildRecord, Store

RESULTS = Path(__file__).parent / "results"


def run_search(config: SearchConfig, store: Store | None = None) -> tuple[Store, int]:
    """Run one search in-process on a store (a temporary SQLite file unless given)."""
    if store is None:
        store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-bench-')}/bench.db")
    return store, Search.start(store, config).run()


def rewards(children: Sequence[ChildRecord]) -> list[float]:
    """Rewards in child order; failed children count as 0."""
    return [c.reward if c.reward is not None else 0.0 for c in children]


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table on stdout (pasteable into README)."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
