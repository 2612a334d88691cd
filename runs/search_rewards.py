"""What a search's controller learns from each finished child: its reward transform's value, or the failure reward."""

from __future__ import annotations

import math

from l2l.controllers import Controller
from l2l.runs.search_config import SearchError
from l2l.search_spaces import Result, SearchSpace


class ControllerRewards:
    """The rewards a controller learns from: the transform's value of a finished child's metrics; for a failed child
    the run's ``failure_reward``, else the worst reward so far, else the space's failure reward."""

    def __init__(self, controller: Controller, space: SearchSpace, failure_reward: float | None) -> None:
        self.controller, self.space, self.failure_reward = controller, space, failure_reward
        self.worst: float | None = None

    def note(self, value: float) -> None:
        """Count a reward the controller learned from (one recorded before a resume too) in the worst so far."""
        self.worst = value if self.worst is None else min(self.worst, value)

    def of(self, results: list[Result]) -> tuple[list[float], SearchError | None]:
        """Each result's reward, in order, and the transform's failure where it failed on one: that is the
        transform's fault, not the child's, so its children still get the failure reward and are recorded before
        the search stops with the error."""
        rewards: list[float] = []
        failed: SearchError | None = None
        for result in results:
            try:
                rewards.append(self.transformed(result) if result.ok else self.failed())
            except SearchError as exc:
                failed = failed or exc
                rewards.append(self.failed())
        return rewards, failed

    def transformed(self, result: Result) -> float:
        name = self.controller.reward_transform
        try:
            value = self.controller.reward_of(result.metrics())
        except Exception as exc:  # a user's transform (module:function) can raise anything: one line naming it
            plain = isinstance(exc, ValueError | TypeError | ArithmeticError)
            raise SearchError(
                f"reward transform {name!r} failed: {exc if plain else f'{type(exc).__name__}: {exc}'}"
            ) from exc
        if not math.isfinite(value):  # it was learned from as the failure reward, without a word
            raise SearchError(f"reward transform {name!r} gave {value} for a finished child of reward {result.reward}")
        self.note(value)
        return value

    def failed(self) -> float:
        if self.failure_reward is not None:
            return self.failure_reward
        return self.worst if self.worst is not None else self.space.failure_reward
