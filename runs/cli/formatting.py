"""How the CLI writes numbers, metrics and candidates: one place, so every table and line agrees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from l2l.runs.cli.export import metric_keys


def parameter_free(child: Any) -> str | None:
    """``N% parameter-free ops`` of a weight-sharing run's derived child (its collapse figure), or None."""
    free = (child.metrics.get("info") or {}).get("parameter_free")
    return f"{free:.0%} parameter-free ops" if isinstance(free, (int, float)) else None


def fmt(x: float | None, digits: int = 4) -> str:
    """A figure with fixed digits, or "-" where there is none yet (tables keep their columns aligned)."""
    return "-" if x is None else f"{x:.{digits}f}"


@dataclass(frozen=True)
class MetricView:
    """Which figures a run's tables and exports show: what its space declares (`SearchSpace.validation_metric`,
    ``test_metrics``, ``cost_metrics``), else the keys its children's results hold, in order of appearance."""

    validation: str = "acc"  # "": the results hold no validation figure (a placement's simulated step time)
    test: tuple[str, ...] = ()
    cost: tuple[str, ...] = ()

    @staticmethod
    def of(space_ref: str, children: Sequence[Any]) -> MetricView:
        """The view for a run of ``space_ref`` over ``children`` (records whose ``metrics`` hold test and cost)."""
        from l2l.search_spaces import SpaceError, load_space_class

        try:
            cls = load_space_class(space_ref)
            declared: tuple[str, tuple[str, ...], tuple[str, ...]] = (
                cls.validation_metric,
                tuple(cls.test_metrics),
                tuple(cls.cost_metrics),
            )
        except SpaceError:  # the plugin is gone: show what the results hold
            declared = ("acc", (), ())
        validation = declared[0]
        kept = {k[4:] for c in children for k in (c.metrics.get("info") or {}) if k.startswith("val_")}
        own_form = validation == "acc" and len(kept) == 1 and not any(c.val_acc is not None for c in children)
        if own_form:  # the one figure the results keep (a suite optimizer search's loss_ratio), and no other
            validation = kept.pop()
        elif validation == "acc" and only_losses(children):  # a space that measures a validation loss, no accuracy
            validation = "loss"
        elif validation == "acc" and children and not any(map(has_validation, children)):
            validation = ""  # a column of dashes says nothing
        found = {part: tuple(metric_keys(children, part)) for part in ("test", "cost")}
        held = {
            part: tuple(k for k in keys if k in found[part])
            for part, keys in (("test", declared[1]), ("cost", declared[2]))
        }  # a space whose results take another form in some settings (`optimizer` with a suite) shows what they hold
        return MetricView(  # what no result holds at all (a derived child scored with shared weights): declared,
            validation,  # unless the results keep a figure of their own instead (columns of dashes said nothing)
            held["test"] or found["test"] or (() if own_form else declared[1]),
            held["cost"] or found["cost"] or (() if own_form else declared[2]),
        )

    def val_column(self) -> list[str]:
        """The validation column's heading, none where the results hold no validation figure."""
        return [f"val {self.validation}"] if self.validation else []

    def val(self, metrics: dict[str, Any], val_acc: float | None, val_loss: float | None = None) -> str:
        """The validation figure: `Result.val_acc` (`Result.val_loss` where the view shows a loss), or
        ``info["val_<metric>"]`` where a space keeps it there."""
        value = val_loss if self.validation == "loss" else val_acc
        if value is None and self.validation == "loss":  # a space that declares "loss" and keeps it in val_acc
            value = val_acc
        info = metrics.get("info") or {}
        if value is None:  # kept in info by the space, or among an architecture's shared-weight figures
            value = info.get(f"val_{self.validation}", (info.get("shared") or {}).get(f"val_{self.validation}"))
        return fmt(value)

    def figure(self, metrics: dict[str, Any], part: str, key: str) -> str:
        """One test or cost figure of a child (``part`` is "test" or "cost")."""
        value = (metrics.get(part) or {}).get(key)
        if value is None:
            return "-"
        number = float(value)
        whole = part == "cost" and (number.is_integer() or abs(number) >= 100)  # 17,891 flops, not 17890.6667
        if part == "cost" and not whole and 0 < abs(number) < 0.001:  # a latency of 43 microseconds, not 0.0000
            return f"{number:.2e}"
        return f"{number:,.0f}" if whole else fmt(value)

    def summary(self, metrics: dict[str, Any], part: str = "test") -> str:
        """Every figure of ``part`` a child has, as ``name value`` pairs ("" when it has none)."""
        keys = self.test if part == "test" else self.cost
        shown = [f"{k} {self.figure(metrics, part, k)}" for k in keys if (metrics.get(part) or {}).get(k) is not None]
        return ", ".join(shown)

    def summaries(self, metrics: dict[str, Any]) -> tuple[str, str]:
        """A child's test figures, then its costs (a placement's step time, a network's parameters)."""
        return self.summary(metrics), self.summary(metrics, "cost")


def only_losses(children: Sequence[Any]) -> bool:
    """True when ``children`` measured a validation loss and none of them an accuracy (a plugin space that
    keeps the default ``validation_metric`` but reports only `Result.val_loss`)."""
    accs = [c for c in children if c.val_acc is not None or "val_acc" in (c.metrics.get("info") or {})]
    return not accs and any(c.val_loss is not None for c in children)


def has_validation(child: Any) -> bool:
    """Whether ``child``'s result holds a validation accuracy or loss (kept in info by some spaces)."""
    return child.val_acc is not None or child.val_loss is not None or "val_acc" in (child.metrics.get("info") or {})


def pruned_at(child: Any) -> int | None:
    """The epoch after which a pruner stopped ``child`` (its reward is its validation figure there), or None."""
    at = (child.metrics.get("info") or {}).get("pruned_at")
    return int(at) if isinstance(at, int | float) and not isinstance(at, bool) else None


def pruned_mark(child: Any) -> str:
    """`` (pruned @k)`` for a child a pruner stopped after epoch k, else ""."""
    at = pruned_at(child)
    return "" if at is None else f" (pruned @{at})"


def pruned_note(children: Sequence[Any]) -> str | None:
    """What a table's ``(pruned @k)`` marks mean, where one of ``children`` has one."""
    if not any(pruned_at(c) is not None for c in children):
        return None
    return "(pruned @k): stopped by the run's pruner after epoch k; its figures are that epoch's, not a full training's"


def joined(*parts: str) -> str:
    """The non-empty parts of a line, comma-separated."""
    return ", ".join(p for p in parts if p)


def describe(run: Any, spec_json: dict[str, Any], plain: bool = False, info: dict[str, Any] | None = None) -> str:
    """A spec as its space describes it, escaped for Rich (descriptions may hold ``[...]``); ``plain``: as it is,
    for text printed without markup; ``info``: the child's, which may say it trained at a lesser depth."""
    from rich.markup import escape

    from l2l.search_spaces import SpaceError, Spec, described, load_space

    spec = Spec.from_json(spec_json)
    try:
        space = load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
        text = described(space, spec)
    except SpaceError:
        space, text = None, " ".join(f"{k}={v}" for k, v in spec.items())
    depth, layers = (info or {}).get("depth"), getattr(space, "n_layers", None)
    if isinstance(depth, int) and isinstance(layers, int) and depth < layers:  # macro's growing depth
        text += f" (trained at depth {depth} of {layers}: the first layers only)"
    return text if plain else escape(text)


def describe_child(run: Any, child: Any, plain: bool = False) -> str:
    """`describe` of a child's spec, with the depth it trained at where that was less than the spec's."""
    return describe(run, child.spec, plain, (child.metrics or {}).get("info"))


def placement_line(children: Sequence[Any]) -> str | None:
    """Where a run's children ran (Ray nodes, by the first 8 characters of their ids) and how many ran again
    after a worker or node died, or None for a run that never used Ray."""
    nodes: dict[str, int] = {}
    for c in children:
        if c.node:
            nodes[c.node[:8]] = nodes.get(c.node[:8], 0) + 1
    retried = [c for c in children if c.attempts > 1]
    if not nodes and not retried:
        return None
    by_count = sorted(nodes.items(), key=lambda item: -item[1])
    on = ", ".join(f"{n} ({k} {'child' if k == 1 else 'children'})" for n, k in by_count)
    extra = sum(c.attempts - 1 for c in retried)
    again = f"; {len(retried)} ran more than once ({extra} extra attempt{'' if extra == 1 else 's'})"
    if not nodes:  # a run without Ray (the local executor): only the attempts
        return again.removeprefix("; ").capitalize()
    return f"nodes: {on}" + (again if retried else "")
