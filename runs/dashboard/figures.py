"""Pictures the dashboard draws on the server: architectures (the `l2l plot arch` and `plot placement`
drawings, as SVG), update rules as typeset formulas (matplotlib's mathtext, as SVG) and their update
heatmaps (values for the browser's chart).

The SVGs are shown through ``<img>``, where a browser runs no script, and matplotlib draws text as glyph
paths: a spec value that holds markup is drawn, never interpreted. Matplotlib is not thread-safe, and the
web server answers in threads, so every drawing holds one lock; drawings are cached, as a child never
changes once finished.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from l2l.runs.store_records import ChildRecord, RunRecord
from l2l.search_spaces import SearchSpace, SpaceError, Spec, described, load_space

_LOCK = threading.Lock()
CACHE_SIZE = 256


class Cache:
    """A small least-recently-used cache of drawings and spaces, safe across threads; with ``epoch``, each key is
    of the epoch it was asked in (what was made from a store since replaced is never found again)."""

    def __init__(self, size: int = CACHE_SIZE, epoch: Callable[[], Any] | None = None) -> None:
        self.size = size
        self._epoch = epoch
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Any, threading.Lock] = {}  # keys being made now, each with the lock its maker holds

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        """The value under ``key``, made (outside the cache's lock) when missing; made once when several threads
        ask for it at once (a page's requests arrive together, and each would read the same 100,000 children)."""
        if self._epoch is not None:
            key = (self._epoch(), key)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            making = self._making.setdefault(key, threading.Lock())
        with making:  # the first asker makes it; the others wait here, then find it
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                value = make()
                with self._lock:
                    self._items[key] = value
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
            finally:
                with self._lock:
                    self._making.pop(key, None)
        return value

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()


_SPACES = Cache(32)
_DRAWINGS = Cache()


def forget() -> None:
    """Forget every space and drawing: the store they came from was replaced, and its run 1 is another run."""
    _SPACES.clear()
    _DRAWINGS.clear()


def space_of(run: RunRecord, pinned: Mapping[str, Any] | None = None) -> tuple[SearchSpace | None, str | None]:
    """The space a run searched, rebuilt from its name and options and given what it measured when the run
    started (``pinned``, `SearchSpace.pinned_data`), or None and why not (a plugin now gone)."""
    options = dict(run.config.get("space_options") or {})

    def make() -> tuple[SearchSpace | None, str | None]:
        try:
            space = load_space(run.space, options, validate=False)
            space.use_pinned_data(pinned or {})
            return space, None
        except (SpaceError, ImportError, OSError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            return None, f"cannot rebuild the space {run.space!r}: {exc}"

    key = (run.space, json.dumps(options, sort_keys=True), run.id if pinned else None)  # measured: this run's
    result: tuple[SearchSpace | None, str | None] = _SPACES.get(key, make)
    return result


def warm_up() -> None:
    """Import matplotlib and load its fonts ahead of the first drawing (seconds the first page would wait)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager, pyplot  # noqa: F401

    font_manager.findfont("DejaVu Sans")


def _svg(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def describe(space: SearchSpace | None, child: ChildRecord) -> str | None:
    """The space's one-line form of a child's spec, or None when the space is gone or the spec no longer fits."""
    if space is None:
        return None
    try:
        return described(space, Spec.from_json(child.spec))
    except (SpaceError, KeyError, TypeError, ValueError):
        return None


def unused(space: SearchSpace | None, child: ChildRecord) -> set[str]:
    """The decisions of a child's spec that do not change its network (an MLP's widths beyond its depth): those
    whose every other option gives the same canonical spec (`SearchSpace.canonical`). None without a canonical
    form, a space that is gone, or a spec that no longer fits it."""
    if space is None:
        return set()
    try:
        spec = Spec.from_json(child.spec)
        base = space.canonical(spec)
        if base is None:
            return set()
        return {d.name for d in space.decisions() if d.kind == "categorical" and _same_for_all(space, spec, base, d)}
    except Exception:  # a plugin's canonical form on a spec it no longer knows: every decision is shown
        return set()


def _same_for_all(space: SearchSpace, spec: Spec, base: Spec, decision: Any) -> bool:
    """Whether every option of ``decision`` gives ``spec`` the canonical spec ``base``."""
    others = [o for o in decision.options if o != spec[decision.name]]
    values = spec.as_dict()
    for option in others:
        values[decision.name] = option
        if space.canonical(Spec(space=spec.space, choices=tuple(values.items()))) != base:
            return False
    return bool(others)


def arch_svg(run: RunRecord, child: ChildRecord, pinned: Mapping[str, Any] | None = None) -> bytes | None:
    """The child's architecture as an SVG (placements as their timeline, with the op timings the run measured:
    ``pinned``), or None when it cannot be drawn."""
    space, _ = space_of(run, pinned)
    if space is None:
        return None

    def make() -> bytes | None:
        from l2l.runs.arch_plot import arch_figure
        from l2l.runs.plots import PlotError

        try:
            spec = Spec.from_json(child.spec)
            title = f"run {run.id}, child {child.number}: {described(space, spec)}"
            with _LOCK:
                from l2l.search_spaces.placement import PlacementSpace

                if isinstance(space, PlacementSpace):
                    from l2l.runs.placement_plots import placement_figure

                    return _svg(placement_figure(space, spec, title))
                return _svg(arch_figure(space.graph(spec), title))
        except (PlotError, SpaceError, KeyError, TypeError, ValueError):
            return None

    result: bytes | None = _DRAWINGS.get(("arch", run.id, child.number), make)
    return result


def formula_svg(latex: str) -> bytes:
    """A formula typeset by matplotlib's mathtext as an SVG (text as glyph paths)."""

    def make() -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.mathtext import math_to_image

        buf = io.BytesIO()
        with _LOCK, matplotlib.rc_context({"svg.fonttype": "path", "font.size": 15}):
            try:
                math_to_image(f"${latex}$", buf, format="svg")
            except ValueError:  # not mathtext after all: draw it as plain text
                buf = io.BytesIO()
                math_to_image(latex.replace("$", r"\$"), buf, format="svg")
        return buf.getvalue()

    result: bytes = _DRAWINGS.get(("formula", latex), make)
    return result


def rules(run: RunRecord, top: list[ChildRecord], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct update rules of an optimizer search (rules computing the same update are one), each
    with its formula, LaTeX, update heatmap over (g, m) and training curves; [] for other spaces."""
    space, _ = space_of(run)
    rule_of = getattr(space, "rule_of", None)
    if rule_of is None:
        return []
    from l2l.optsearch.language import to_formula, to_latex, to_text
    from l2l.optsearch.simplify import functional_hash, simplified_rule

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in top:
        try:
            rule = rule_of(Spec.from_json(c.spec))
        except (SpaceError, KeyError, TypeError, ValueError):
            continue
        key = functional_hash(rule)
        if key in seen:
            continue
        seen.add(key)
        simple = simplified_rule(rule)
        info = c.metrics.get("info") or {}
        out.append(
            {
                "child": c.number,
                "reward": c.reward,
                "rule": to_text(rule),
                "formula": to_formula(simple),
                "latex": to_latex(simple),
                "best_lr": info.get("best_lr"),
                "test_acc": (c.metrics.get("test") or {}).get("test_acc"),
                "curves": {k: v for k, v in (c.curves or {}).items() if isinstance(v, list)},
                "heatmap": _DRAWINGS.get(("heat", run.id, c.number), functools.partial(heatmap, rule)),
            }
        )
        if len(out) == k:
            break
    return out


def heatmap(rule: Any, limit: float = 1.0, n: int = 41) -> dict[str, Any]:
    """The rule's update (without the learning rate) on an n x n grid of gradient g and momentum m, as
    `l2l plot optimizer` draws it; colours are bounded at the 98th percentile of |update|."""
    import torch

    from l2l.optsearch.plots import flat_note, update_surface

    axis = torch.linspace(-limit, limit, n)
    m, g = torch.meshgrid(axis, axis, indexing="ij")
    with _LOCK:
        z = update_surface(rule, g, m).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    bound = float(torch.quantile(z.abs().flatten(), 0.98)) or float(z.abs().max()) or 1.0
    return {
        "g": [round(float(v), 4) for v in axis],
        "m": [round(float(v), 4) for v in axis],
        "z": [[round(float(v), 5) for v in row] for row in z],
        "bound": bound,
        "note": flat_note(rule, float(z[0, 0])) if float(z.max() - z.min()) == 0.0 else None,  # one colour: why
    }
