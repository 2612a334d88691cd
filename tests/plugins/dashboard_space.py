"""A space for the dashboard's tests: children that take a moment, a spec value holding markup, and failures."""

from __future__ import annotations

import time
from collections.abc import Sequence

from l2l.search_spaces import Context, Decision, Result, SearchSpace, Spec

MARKUP = "<script>window.pwned=1</script><b>bold</b>"


class Marked(SearchSpace):
    """Each child sleeps ``delay`` seconds; ``layer`` 'boom' raises (a traceback to show), and the ``label`` decision
    offers a value that is markup, which the dashboard must show as text. A later child's reward beats every
    earlier one's; children report a cost and curves."""

    name = "marked"

    def __init__(self, delay: float = 0.3) -> None:
        super().__init__(delay=delay)
        self.delay = delay

    def decisions(self) -> Sequence[Decision]:
        return [
            Decision.categorical("layer", ["conv", "pool", "boom", "dense"]),
            Decision.categorical("width", [8, 16, 32]),
            Decision.categorical("label", ["plain", MARKUP]),
        ]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        time.sleep(self.delay)
        if spec["layer"] == "boom":
            raise RuntimeError("child exploded on purpose")
        width = int(str(spec["width"]))
        # a later child always beats an earlier one: the best reward on screen changes with every success
        score = 0.1 + 0.01 * ctx.child + {"conv": 0.003, "pool": 0.001, "dense": 0.002}[str(spec["layer"])]
        curve = [score * (e + 1) / 3 for e in range(3)]
        return Result(
            reward=score,
            val_acc=score,
            val_loss=1 - score,
            cost={"params": float(width * 1000)},
            curves={"train_loss": [1 - c for c in curve], "val_acc": curve},
        )
