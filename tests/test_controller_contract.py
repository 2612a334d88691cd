"""The controller contract (`l2l.testing.controllers`) over every registered strategy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from l2l.controllers import STRATEGIES, ControllerError, Proposal, RandomController, UpdateStats, make_controller
from l2l.testing.controllers import DECISIONS, ControllerContract, drive

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # gp and qmc, per ask

# every strategy `make_controller` knows, each wearing the screen, and some wearing re-evaluation
REEVALUATED = ["random+reeval", "reinforce+reeval", "evolution+screen+reeval", "tpe+reeval"]
STRATEGY_NAMES: list[str] = [*STRATEGIES, *(f"{name}+screen" for name in STRATEGIES), *REEVALUATED]
# the screen starts after 2 rewards and hands over to the GP after 6, so these short runs screen with both models
SCREEN = {"screen_warmup": 2, "screen": 3, "screen_uniform": 4, "screen_gp_from": 6}


class TestEveryStrategy(ControllerContract):
    @pytest.fixture(params=STRATEGY_NAMES)
    def strategy(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def settings(self, strategy: str) -> dict[str, Any]:
        return dict(SCREEN) if "+screen" in strategy else {}

    @pytest.fixture
    def repeats_identities(self, strategy: str) -> bool:
        return strategy.startswith("gp")  # its acquisition gives the same cell when asked again


class Seedless(RandomController):
    """Leaves its random state out of the checkpoint, as `tpe` and `qmc` once left out their seed."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "policy_version": self.policy_version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy_version = int(state["policy_version"])


class InOrder(RandomController):
    """Takes results only in the order it proposed them, as `tpe`, `gp` and `qmc` once did."""

    def __init__(self, decisions: Sequence[Any], seed: int) -> None:
        super().__init__(decisions, seed)
        self.out: list[tuple[int, ...]] = []

    def propose(self, n: int) -> list[Proposal]:
        proposals = super().propose(n)
        self.out += [p.tokens for p in proposals]
        return proposals

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        for p in proposals:
            assert self.out.pop(0) == p.tokens, "proposal is not the pending trial"
        return super().update(proposals, rewards)


def test_the_contract_catches_a_forgetful_checkpoint_and_in_order_updates() -> None:
    contract = ControllerContract()
    with pytest.raises(AssertionError):
        contract.test_state_restores_into_a_differently_seeded_instance(lambda seed: Seedless(DECISIONS, seed), "bytes")
    with pytest.raises(AssertionError, match="is not the pending trial"):
        contract.test_results_in_any_order_and_grouping(lambda seed: InOrder(DECISIONS, seed), DECISIONS)


@pytest.mark.parametrize("sampler", ["tpe", "qmc"])
def test_optuna_checkpoints_without_seed_or_outstanding_trials_still_load(sampler: str) -> None:
    a = make_controller(sampler, DECISIONS, 3)
    drive(a, 2, 3)
    old = {k: v for k, v in a.state_dict().items() if k not in ("seed", "pending")}  # written before they were saved
    b = make_controller(sampler, DECISIONS, 3)
    b.load_state_dict(old)
    assert drive(a, 2, 3) == drive(b, 2, 3)
    with pytest.raises(
        ControllerError,
        match=rf"^{sampler} checkpoint has outstanding trial numbers \[9\] and released ones \[\] among 7$",
    ):
        b.load_state_dict({**old, "pending": [[9, [0] * 7]]})
