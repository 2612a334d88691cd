"""What a search's controller learns from each finished child: its reward transform's value, or the failure reward."""

from __future__ import annotations

import math
from dataclasses import replace

from l2l.controllers import Controller, costs_needed
from l2l.runs.search_config import SearchError
from l2l.search_spaces import Result, SearchSpace


class ControllerRewards:
    """The rewards a controller learns from: the transform's value of a finished child's metrics; for a failed child,
    or a value that is not finite, the run's ``failure_reward``, else the worst reward so far, else the space's."""

    def __init__(self, controller: Controller, space: SearchSpace, failure_reward: float | None) -> None:
        self.controller, self.space, self.failure_reward = controller, space, failure_reward
        self.worst: float | None = None
        self._said: list[str] = []

    def note(self, value: float) -> None:
        """Count a reward the controller learned from (one recorded before a resume too) in the worst so far."""
        self.worst = value if self.worst is None else min(self.worst, value)

    def of(self, results: list[Result]) -> list[float]:
        """Each result's reward, in order. A transform that raises stops the search with a `SearchError` naming it,
        before anything of these results is recorded (they train again on resume, once the transform is fixed)."""
        return [self.transformed(result) if result.ok else self.failed() for result in results]

    def fitting(self, result: Result) -> Result:
        """``result``, failed where it finished without a cost the reward transform reads (`costs_needed`): a
        result that does not fit fails its child, with the reason, and the search goes on."""
        name = self.controller.reward_transform
        lacking = [c for c in costs_needed(name) if result.ok and result.cost.get(c) is None]
        if not lacking:
            return result
        reports = ", ".join(k for k, v in result.cost.items() if v is not None) or "no cost"
        return replace(
            result,
            status="failed",
            error=f"its result lacks the cost {lacking[0]!r} that reward transform {name!r} reads (space "
            f"{self.space.name!r}; this child reported {reports})",
        )

    def said(self) -> list[str]:
        """What the rewards since the last call have to tell the user (each said once by the search)."""
        said, self._said = self._said, []
        return said

    def transformed(self, result: Result) -> float:
        name = self.controller.reward_transform
        try:
            value = self.controller.reward_of(result.metrics())
        except Exception as exc:  # a user's transform (module:function) can raise anything: one line naming it
            plain = isinstance(exc, ValueError | TypeError | ArithmeticError)
            raise SearchError(
                f"reward transform {name!r} failed: {exc if plain else f'{type(exc).__name__}: {exc}'}"
            ) from exc
        if not math.isfinite(value):  # learned as the failure reward, as before, but no longer without a word
            self._said.append(
                f"reward transform {name!r} gave {value} for a finished child: it gets the failure reward"
            )
            return self.failed()
        self.note(value)
        return value

    def failed(self) -> float:
        if self.failure_reward is not None:
            return self.failure_reward
        return self.worst if self.worst is not None else self.space.failure_reward
