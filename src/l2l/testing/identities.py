"""The controller contract's part about identities (`Controller.identify`): a space may say that token
sequences which differ are one candidate (`SearchSpace.identity`), and a strategy that keeps identities
(it reports ``identities`` in its update statistics) proposes each once, stops rejecting at its bound
however collapsed it is, and rebuilds them from a run's children when it resumes from a lean checkpoint.
A strategy that keeps none skips these tests.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pytest

from l2l.controllers import Controller, Ledger, Proposal, make_controller
from l2l.controllers.reeval import REEVALUATION
from l2l.controllers.unique import PASSES
from l2l.search_spaces import Decision

Identity = Callable[[Sequence[int]], Hashable]


def ignoring_a_choice(decisions: Sequence[Decision]) -> Identity:
    """An identity under which the first categorical decision with a choice does not matter: sequences that
    differ there only are one candidate (as rules that differ in an operand nobody reads)."""
    pos = 0
    for d in decisions:
        if d.kind == "categorical" and d.n_choices >= 2:
            break
        pos += d.width
    return lambda tokens: (*tokens[:pos], *tokens[pos + 1 :])


def drive_with_identity(
    c: Controller, rounds: int, n: int, reward: Callable[[Sequence[int]], float]
) -> tuple[list[Proposal], list[tuple[tuple[int, ...], float]], dict[str, float]]:
    """``rounds`` rounds of ``n`` proposals and one update: the proposals, the (tokens, reward) pairs learned
    in order, and the last update's extra statistics."""
    proposals, learned, extra = [], [], {}
    for _ in range(rounds):
        batch = c.propose(n)
        rewards = [reward(p.tokens) for p in batch]
        extra = dict(c.update(batch, rewards).extra)
        proposals += batch
        learned += [(p.tokens, r) for p, r in zip(batch, rewards, strict=True)]
    return proposals, learned, extra


class IdentityContract:
    """Mixed into `l2l.testing.controllers.ControllerContract`."""

    @staticmethod
    def _reward(tokens: Sequence[int]) -> float:
        from l2l.testing.controllers import reward_of

        return reward_of(tokens)

    def _identified(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any], seed: int, identity: Identity
    ) -> Controller:
        return make_controller(strategy, decisions, seed, dict(settings), identity=identity)

    @pytest.fixture
    def repeats_identities(self) -> bool:
        """True for a strategy that may propose an identity again before the space runs out: one whose
        sampler, asked again, gives the same candidate (Optuna's GP maximizes a deterministic acquisition),
        so only the bound on rejections ends its draws. Its repeats must still be counted."""
        return False

    def test_no_identity_is_proposed_twice(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any], repeats_identities: bool
    ) -> None:
        identity = ignoring_a_choice(decisions)
        c = self._identified(strategy, decisions, settings, 0, identity)
        proposals, _, extra = drive_with_identity(c, 4, 4, self._reward)
        if "identities" not in extra:
            pytest.skip("the strategy keeps no identities: it may propose anything again")
        keys = [identity(p.tokens) for p in proposals if p.policy_version != REEVALUATION]
        assert extra["identities"] == len(set(keys)), extra
        assert extra["identity_repeats"] == len(keys) - len(set(keys)), "a repeated identity went uncounted"
        if not repeats_identities:
            assert len(set(keys)) == len(keys), "an identity was proposed twice"

    def test_one_identity_for_every_sequence_does_not_stall(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any]
    ) -> None:
        """A policy collapsed onto one identity: each call rejects a bounded number of samples (`PASSES` of the
        strategy's own, as many uniform ones where it samples with replacement), then proposes repeats, counted."""
        c = self._identified(strategy, decisions, settings, 1, lambda tokens: "one")
        proposals, _, extra = drive_with_identity(c, 3, 4, self._reward)
        if "identities" not in extra:
            pytest.skip("the strategy keeps no identities: it may propose anything again")
        own = [p for p in proposals if p.policy_version != REEVALUATION]
        assert len(proposals) == 12 and extra["identities"] == 1
        assert extra["identity_repeats"] == len(own) - 1, extra
        assert extra["identity_rejected"] <= 2 * PASSES * len(proposals), extra

    def test_a_lean_checkpoint_rebuilds_the_identities_from_the_children(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any]
    ) -> None:
        identity = ignoring_a_choice(decisions)
        a = self._identified(strategy, decisions, settings, 2, identity)
        proposals, learned, _ = drive_with_identity(a, 2, 3, self._reward)
        b = self._identified(strategy, decisions, settings, 3, identity)
        b.load_checkpoint(a.checkpoint_bytes(), Ledger([p.tokens for p in proposals], learned))
        after_a, _, extra_a = drive_with_identity(a, 2, 3, self._reward)
        after_b, _, extra_b = drive_with_identity(b, 2, 3, self._reward)
        assert [p.tokens for p in after_a] == [p.tokens for p in after_b]
        assert extra_a == extra_b
