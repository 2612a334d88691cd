"""The contract every search strategy passes: subclass `ControllerContract` and override `strategy`.

    from l2l.testing.controllers import ControllerContract

    class TestMyStrategy(ControllerContract):
        @pytest.fixture
        def strategy(self) -> str:
            return "my-strategy"

It checks what the search loop relies on: well-formed proposals, updates that reject bad input with
a `ControllerError` and change nothing then, the same seed giving the same run, a state that restores
into a differently-seeded instance and continues identically, and results that come back in any
order and grouping (the asynchronous executor's pattern), including results for proposals the
controller never made (children proposed after the checkpoint a run was resumed from), and, where a space
gives token sequences an identity, no identity proposed twice (`l2l.testing.identities`).
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch

from l2l.controllers import Controller, ControllerError, Proposal, UpdateStats, make_controller
from l2l.controllers.base import checked_proposals, checked_stats
from l2l.controllers.reeval import REEVALUATION
from l2l.search_spaces import Decision, sequence_length, token_sizes
from l2l.search_spaces.constraints import Constraints, clauses_of
from l2l.testing import one_torch_thread
from l2l.testing.identities import IdentityContract

# Small enough that a run is quick, varied enough to hold every kind of decision: categorical ones of
# several sizes and of one option, and anchors with 0, 1 and 2 earlier anchors (7 tokens, 192 sequences).
DECISIONS: tuple[Decision, ...] = (
    Decision.categorical("op", ["conv", "pool", "skip"]),
    Decision.anchor("in0", 0),
    Decision.categorical("width", [8, 16, 32, 64]),
    Decision.anchor("in1", 1),
    Decision.categorical("fixed", ["only"]),
    Decision.anchor("in2", 2),
    Decision.categorical("act", ["relu", "tanh"]),
)

Make = Callable[[int], Controller]
Run = list[tuple[list[tuple[int, ...]], UpdateStats]]


def reward_of(tokens: Sequence[int]) -> float:
    """A deterministic, varied reward for a token sequence, so model-based strategies have a signal."""
    interaction = sum(t * 31**i for i, t in enumerate(tokens)) % 7  # so no two positions add up independently
    return sum((i % 3 + 1) * (t + 1) for i, t in enumerate(tokens)) / (3 * len(tokens)) + 0.01 * interaction


def rewards_of(proposals: Sequence[Proposal]) -> list[float]:
    """`reward_of` for each proposal."""
    return [reward_of(p.tokens) for p in proposals]


def checked(controller: Controller) -> Controller:
    """``controller`` with its `propose` and `update` answers checked as a search checks them
    (`checked_proposals`, `checked_stats`): a list of n `Proposal` of allowed sequences, an `UpdateStats`."""
    propose, update = controller.propose, controller.update
    controller.propose = lambda n: checked_proposals(controller, propose(n), n)  # type: ignore[method-assign]
    controller.update = lambda proposals, rewards: checked_stats(  # type: ignore[method-assign]
        controller, update(proposals, rewards)
    )
    return controller


def drive(controller: Controller, rounds: int, n: int) -> Run:
    """``rounds`` synchronous rounds of ``n`` proposals and one update; the proposals' tokens and the stats."""
    out: Run = []
    for _ in range(rounds):
        proposals = controller.propose(n)
        out.append(([p.tokens for p in proposals], controller.update(proposals, rewards_of(proposals))))
    return out


def tell(controller: Controller, proposals: Sequence[Proposal]) -> UpdateStats:
    """Update ``controller`` with ``proposals`` and their `reward_of` rewards."""
    return controller.update(proposals, rewards_of(proposals))


def transfer(source: Controller, target: Controller, via: str) -> None:
    """Copy ``source``'s state into ``target`` through `state_dict` or through checkpoint bytes."""
    if via == "state_dict":
        target.load_state_dict(source.state_dict())
    else:
        target.load_bytes(source.to_bytes())


def forbidding(decisions: Sequence[Decision]) -> Constraints | None:
    """Constraints forbidding two combinations of the first two categorical decisions with two options or
    more (their first options together; the second of one with the last of the other); None without two."""
    pair = [d for d in decisions if d.kind == "categorical" and d.n_choices >= 2][:2]
    if len(pair) < 2:
        return None
    a, b = pair
    forbidden = [{a.name: a.options[0], b.name: b.options[0]}, {a.name: a.options[1], b.name: b.options[-1]}]
    return Constraints(token_sizes(decisions), clauses_of(decisions, forbidden))


def canonicalizing(decisions: Sequence[Decision], limit: int = 20_000) -> Constraints | None:
    """Constraints of a canonical form under which the second categorical decision does not matter while the
    first takes its first option (as a layer's width does not matter when the layer is a skip): one sequence
    per architecture. None without two such decisions, or with more than ``limit`` sequences."""
    sizes = token_sizes(decisions)
    pos, where = 0, []
    for d in decisions:
        if d.kind == "categorical" and d.n_choices >= 2:
            where.append(pos)
        pos += d.width
    if len(where) < 2 or math.prod(sizes) > limit:
        return None
    first, second = where[:2]

    def canonical(tokens: tuple[int, ...]) -> tuple[int, ...]:
        return (*tokens[:second], 0, *tokens[second + 1 :]) if tokens[first] == 0 else tokens

    members = {canonical(t) for t in itertools.product(*(range(k) for k in sizes))}
    return Constraints(sizes, members=members, canonical=canonical)


def check_proposal(proposal: Proposal, decisions: Sequence[Decision], policy_version: int) -> None:
    """Assert ``proposal`` is a well-formed candidate for ``decisions``: new, or a re-evaluation."""
    assert isinstance(proposal, Proposal), proposal
    tokens = proposal.tokens
    assert isinstance(tokens, tuple) and all(type(t) is int for t in tokens), (
        f"tokens are not a tuple of ints: {tokens!r}"
    )
    assert len(tokens) == sequence_length(decisions), f"{len(tokens)} tokens for {sequence_length(decisions)} positions"
    pos = 0
    for d in decisions:
        for t in tokens[pos : pos + d.width]:
            assert 0 <= t < d.n_choices, f"token {t} of decision {d.name!r} is not in 0..{d.n_choices - 1}: {tokens}"
        pos += d.width
    assert isinstance(proposal.log_prob, float) and math.isfinite(proposal.log_prob), proposal
    assert isinstance(proposal.entropy, float) and math.isfinite(proposal.entropy), proposal
    # a re-evaluation (`l2l.controllers.reeval`) repeats an architecture and says so by its policy version
    assert proposal.policy_version in (policy_version, REEVALUATION), (proposal.policy_version, policy_version)


def bad_updates(proposals: list[Proposal], sizes: Sequence[int]) -> dict[str, tuple[list[Proposal], list[float], str]]:
    """Updates a controller must reject, built from four fresh ``proposals``: name -> (proposals, rewards,
    the error message it must raise, as a regular expression)."""
    p, q = proposals[0], proposals[1]
    short = Proposal(q.tokens[:-1], q.log_prob, q.entropy, q.policy_version)
    wide = Proposal((sizes[0], *p.tokens[1:]), p.log_prob, p.entropy, p.policy_version)
    return {
        "more-rewards": (proposals[:2], [1.0, 2.0, 3.0], r"^update got 2 proposals but 3 rewards$"),
        "fewer-rewards": (proposals[:3], [1.0], r"^update got 3 proposals but 1 rewards$"),
        "no-proposals": ([], [], r"^update needs at least one proposal$"),
        "nan": (proposals[:2], [1.0, math.nan], r"^rewards must be finite, got \[1\.0, nan\]$"),
        "inf": (proposals[:1], [-math.inf], r"^rewards must be finite, got \[-inf\]$"),
        "short": (
            [p, short],
            [1.0, 2.0],
            rf"^proposal \[.*\] has {len(sizes) - 1} tokens; the decisions take {len(sizes)}$",
        ),
        "range": ([wide], [1.0], rf"^proposal \[.*\]: token {sizes[0]} at position 0 is not in 0\.\.{sizes[0] - 1}$"),
    }


BAD_UPDATES = ["more-rewards", "fewer-rewards", "no-proposals", "nan", "inf", "short", "range"]


class ControllerContract(IdentityContract):
    """Tests every strategy passes (those about identities in `IdentityContract`). Override the `strategy`
    fixture; `decisions` and `settings` optionally."""

    warmup = 10  # rewards before the model-based phase of TPE and GP (their random start-up trials)

    @pytest.fixture(autouse=True)
    def one_thread(self) -> Iterator[None]:
        """Controllers run on the driver, beside the workers: one thread, as there (and fast on a busy machine)."""
        with one_torch_thread():
            yield

    @pytest.fixture
    def strategy(self) -> str:
        """The strategy name `make_controller` builds; a subclass must override this."""
        raise NotImplementedError("override the `strategy` fixture with the name of the strategy under test")

    @pytest.fixture
    def decisions(self) -> Sequence[Decision]:
        """The decisions the controller proposes for."""
        return DECISIONS

    @pytest.fixture
    def settings(self) -> dict[str, Any]:
        """Settings for the strategy (``-C`` on the command line)."""
        return {}

    @pytest.fixture
    def make(self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any]) -> Make:
        """Builds the controller under test with a given seed; its `propose` and `update` answers are checked
        as a search checks them, so a plugin's mistake fails with the search's message."""
        return lambda seed: checked(make_controller(strategy, decisions, seed, dict(settings)))

    def test_proposals_are_well_formed(self, make: Make, decisions: Sequence[Decision]) -> None:
        c = make(0)
        assert c.policy_version == 0
        for n in (1, 4):
            proposals = c.propose(n)
            assert len(proposals) == n
            for p in proposals:
                check_proposal(p, decisions, 0)
        rewards = rewards_of(proposals)
        stats = c.update(proposals, rewards)
        assert c.policy_version == stats.policy_version == 1, "each update advances the policy version by one"
        assert stats.n == 4 and stats.mean_reward == pytest.approx(sum(rewards) / 4, rel=1e-5)
        assert math.isfinite(stats.loss) and math.isfinite(stats.entropy)
        assert stats.baseline is None or math.isfinite(stats.baseline)
        assert all(isinstance(v, float) and math.isfinite(v) for v in stats.extra.values()), stats.extra
        for p in c.propose(3):
            check_proposal(p, decisions, 1)
        assert c.reward_of({"reward": 0.25, "val_acc": 0.5, "val_loss": 1.0}) == 0.25  # the default transform
        with pytest.raises(ControllerError, match=r"\b0\b"):  # refused, saying what it was given
            c.propose(0)

    @pytest.mark.parametrize("case", BAD_UPDATES)
    def test_bad_update_is_rejected_and_changes_nothing(
        self, make: Make, decisions: Sequence[Decision], case: str
    ) -> None:
        c, twin = make(1), make(1)
        proposals, same = c.propose(4), twin.propose(4)
        bad, rewards, message = bad_updates(proposals, token_sizes(decisions))[case]
        with pytest.raises(ControllerError, match=message):
            c.update(bad, rewards)
        assert c.policy_version == 0
        tell(c, proposals)
        tell(twin, same)
        assert c.propose(3) == twin.propose(3), "a rejected update must leave the controller as it was"

    def test_same_seed_same_run(self, make: Make) -> None:
        assert drive(make(3), 3, 3) == drive(make(3), 3, 3)

    def test_another_seed_another_run(self, make: Make) -> None:
        a, b = drive(make(3), 2, 3), drive(make(4), 2, 3)
        assert [tokens for tokens, _ in a] != [tokens for tokens, _ in b], (
            "seeds 3 and 4 proposed the same sequences: a strategy's seed must change what it draws (a "
            "deterministic sweep can start at an offset drawn from its seed), or repeated searches are one search"
        )

    @pytest.mark.parametrize("via", ["state_dict", "bytes"])
    def test_state_restores_into_a_differently_seeded_instance(self, make: Make, via: str) -> None:
        a = make(5)
        drive(a, 2, 3)
        b = make(6)
        transfer(a, b, via)
        assert b.policy_version == a.policy_version == 2
        assert drive(a, 2, 3) == drive(b, 2, 3)

    def test_resume_after_k_updates_equals_an_uninterrupted_run(self, make: Make) -> None:
        whole = drive(make(7), 4, 2)
        first = make(7)
        head = drive(first, 2, 2)
        checkpoint = first.to_bytes()  # written after update 2; the run then proposes batch 3 and dies
        lost = [p.tokens for p in first.propose(2)]
        resumed = make(7)
        resumed.load_bytes(checkpoint)
        assert head + drive(resumed, 2, 2) == whole
        assert lost == whole[2][0], "the resumed run re-proposes the children the interrupted one had proposed"

    def test_told_its_budget_it_resumes_exactly(self, make: Make) -> None:
        """A search tells its strategy the number of children (`Controller.plan`) when it starts and again when
        it resumes: a strategy that uses it decides after a restore as the uninterrupted run does."""

        def planned(seed: int) -> Controller:
            c = make(seed)
            c.plan(8)
            return c

        whole = drive(planned(9), 4, 2)
        first = planned(9)
        head = drive(first, 2, 2)
        resumed = planned(9)
        resumed.load_bytes(first.to_bytes())
        assert head + drive(resumed, 2, 2) == whole

    def test_results_in_any_order_and_grouping(self, make: Make, decisions: Sequence[Decision]) -> None:
        """The asynchronous executor's pattern: propose again before updating, then update with a subset of the
        outstanding proposals, in another order than proposed, more than once."""
        runs = []
        for _ in range(2):
            c = make(8)
            a, b = c.propose(3), c.propose(3)
            tell(c, [b[1], a[2], a[0]])
            d = c.propose(2)
            tell(c, [d[1], b[0]])
            tell(c, [a[1], b[2], d[0]])
            assert c.policy_version == 3
            e = c.propose(4)
            for p in e:
                check_proposal(p, decisions, 3)
            runs.append([p.tokens for p in a + b + d + e])
        assert runs[0] == runs[1], "the same seed and the same order of results give the same proposals"

    def test_update_takes_proposals_made_before_a_restore(self, make: Make, decisions: Sequence[Decision]) -> None:
        """A run resumed from a checkpoint feeds back the children proposed after it, which the restored
        controller never proposed, in whatever order they finish."""
        a = make(9)
        drive(a, 1, 3)
        checkpoint = a.to_bytes()
        after = a.propose(3)
        b = make(9)
        b.load_bytes(checkpoint)
        stats = tell(b, [after[2], after[0]])
        assert stats.n == 2 and b.policy_version == 2
        tell(b, [after[1]])
        for p in b.propose(3):
            check_proposal(p, decisions, 3)

    def test_checkpoint_taken_with_results_outstanding(self, make: Make) -> None:
        """Past the start-up phase, a checkpoint written while a proposal is out restores into another seed,
        and both continue identically, proposing before and after the outstanding result comes back."""
        a = make(10)
        drive(a, 1, self.warmup)
        first, second = a.propose(2), a.propose(1)
        tell(a, [second[0], first[0]])
        b = make(11)
        transfer(a, b, "bytes")
        runs = []
        for c in (a, b):
            more = c.propose(2)  # proposed while the result from before the checkpoint is still out
            tell(c, [more[0], first[1]])
            runs.append([p.tokens for p in more + c.propose(2)])
        assert runs[0] == runs[1]

    def test_foreign_or_corrupt_checkpoints_are_rejected(self, make: Make) -> None:
        c = make(0)
        buf = io.BytesIO()
        torch.save({"kind": "no-such-kind", "policy_version": 3}, buf)
        with pytest.raises(
            ControllerError, match=rf"^checkpoint is of a 'no-such-kind' controller, not '{re.escape(c.kind)}'$"
        ):
            c.load_bytes(buf.getvalue())
        with pytest.raises(ControllerError, match=rf"^cannot read {re.escape(c.kind)} controller checkpoint"):
            c.load_bytes(b"not a checkpoint")
        assert c.policy_version == 0

    def test_forbidden_combinations_are_never_proposed(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any]
    ) -> None:
        constraints = forbidding(decisions)
        if constraints is None:
            pytest.skip("the decisions hold fewer than two categorical decisions with a choice")
        c = make_controller(strategy, decisions, 0, dict(settings), constraints)
        run = drive(c, 2 + self.warmup // 4, 4)
        proposed = [t for tokens, _ in run for t in tokens]
        assert all(constraints.valid(t) for t in proposed), [t for t in proposed if not constraints.valid(t)]
        b = make_controller(strategy, decisions, 1, dict(settings), constraints)
        transfer(c, b, "bytes")  # and so does a restored one
        assert all(constraints.valid(p.tokens) for p in b.propose(8))

    def test_a_canonical_space_is_searched_one_sequence_per_architecture(
        self, strategy: str, decisions: Sequence[Decision], settings: dict[str, Any]
    ) -> None:
        constraints = canonicalizing(decisions)
        if constraints is None:
            pytest.skip("the decisions hold fewer than two categorical decisions with a choice, or too many tokens")
        c = make_controller(strategy, decisions, 0, dict(settings), constraints)
        proposed = [t for tokens, _ in drive(c, 2 + self.warmup // 4, 4) for t in tokens]
        assert all(constraints.valid(t) for t in proposed), "a non-canonical sequence was proposed"
        if c.proposed_before():  # a strategy that never repeats does not repeat an architecture either
            assert len(set(proposed)) == len(proposed)
