"""A weight-sharing search's checkpoint: everything `--resume` needs to continue at the epoch after it (shared
weights, optimizer, controller, generators), one per epoch in the store (`l2l.runs.store_sharing`)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from l2l.runs.search_config import SearchError

if TYPE_CHECKING:
    from l2l.controllers import Controller
    from l2l.nas.shared import SharedWeights
    from l2l.runs.store import Store


class Checkpoints:
    """`WeightSharingSearch`'s checkpoint and restore (a mixin: they read and set its state)."""

    run_id: int
    store: Store
    weights: SharedWeights
    optimizer: torch.optim.Optimizer | None
    controller: Controller
    generator: torch.Generator
    worst: float | None
    requeued: int
    _make_optimizer: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]

    def _checkpoint(self, epoch: int) -> bytes:
        buf = io.BytesIO()
        torch.save(
            {
                "kind": "weight_sharing",
                "epoch": epoch,
                "weights": self.weights.store_state(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "controller": self.controller.to_bytes(),
                "generator": self.generator.get_state(),
                # uniform draws come from the controller's generator, which not every strategy checkpoints
                "controller_generator": self.controller.generator.get_state(),
                "worst": self.worst,
            },
            buf,
        )
        return buf.getvalue()

    def _restore(self) -> tuple[int, int, int]:
        """(first epoch to run, next child number, updates so far) from the run's checkpoint, if any."""
        checkpoint = self.store.latest_checkpoint(self.run_id)
        if checkpoint is None:
            self.store.discard_children_from(self.run_id, 0)
            return 0, 0, 0
        try:
            state = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
        except Exception as exc:  # torch raises many types on a corrupt checkpoint
            raise SearchError(f"run {self.run_id}: cannot read its weight-sharing checkpoint: {exc}") from exc
        if not isinstance(state, dict) or state.get("kind") != "weight_sharing":
            raise SearchError(f"run {self.run_id}: its checkpoint is not a weight-sharing one")
        self.weights.load_store_state(state["weights"])
        if state["optimizer"] is not None:
            self.optimizer = self._make_optimizer(list(self.weights.ordered_parameters()))
            self.optimizer.load_state_dict(state["optimizer"])
        self.controller.load_bytes(state["controller"])
        self.generator.set_state(state["generator"])
        self.controller.generator.set_state(state["controller_generator"])
        self.worst = state.get("worst")
        derived = self.store.children(self.run_id, "derived")
        if not derived:  # anything after the checkpoint is recorded again
            self.store.discard_children_from(self.run_id, checkpoint.next_child)
        self.requeued = 0
        return int(state["epoch"]) + 1, checkpoint.next_child, len(self.store.updates(self.run_id))
