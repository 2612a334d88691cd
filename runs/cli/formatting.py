"""How the CLI writes numbers, metrics and candidates: one place, so every table and line agrees."""

from __future__ import annotations

from typing import Any


def fmt(x: float | None, digits: int = 4) -> str:
    """A figure with fixed digits, or "-" where there is none yet (tables keep their columns aligned)."""
    return "-" if x is None else f"{x:.{digits}f}"


def format_val(metrics: dict[str, Any]) -> str:
    """Validation accuracy, or bits per character for language models."""
    if metrics.get("val_acc") is not None:
        return f"acc {fmt(metrics['val_acc'])}"
    bpc = (metrics.get("info") or {}).get("val_bpc")
    return f"bpc {bpc:.3f}" if bpc is not None else "-"


def format_test(metrics: dict[str, Any]) -> str:
    """Test accuracy, or test bits per character for language models."""
    test = metrics.get("test") or {}
    if test.get("test_acc") is not None:
        return f"acc {fmt(test['test_acc'])}"
    if test.get("test_bpc") is not None:
        return f"bpc {test['test_bpc']:.3f}"
    return "-"


def describe(run: Any, spec_json: dict[str, Any]) -> str:
    """A spec as its space describes it, escaped for Rich (descriptions may hold ``[...]``)."""
    from rich.markup import escape

    from l2l.search_spaces import SpaceError, Spec, load_space

    spec = Spec.from_json(spec_json)
    try:
        space = load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
        return escape(space.describe(spec))
    except SpaceError:
        return escape(" ".join(f"{k}={v}" for k, v in spec.items()))
