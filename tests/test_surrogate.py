"""The surrogate that screens REINFORCE's proposals: the ridge ensemble, and what screening changes."""

from __future__ import annotations

import itertools

import pytest
import torch

from controllers import ControllerError, ReinforceController
from controllers.reinforce import build_config
from controllers.surrogate import RidgeEnsemble
from search_spaces import Decision

SIZES = [5, 5, 5, 5]
# an additive reward with one interaction, so a one-hot linear model is good but not exact
WEIGHTS = torch.tensor([[0.0, 1.0, 3.0, 0.5, 2.0], [1.0, 0.0, 0.0, 4.0, 1.0], [2.0, 0.0, 1.0, 0.0, 0.0], [0.0] * 5])


def reward(tokens: tuple[int, ...]) -> float:
    value = float(sum(WEIGHTS[i, t] for i, t in enumerate(tokens)))
    return value + (1.5 if tokens[2] == tokens[3] else 0.0)


def decisions() -> list[Decision]:
    return [Decision.categorical(f"d{i}", [str(v) for v in range(n)]) for i, n in enumerate(SIZES)]


def test_features_are_a_bias_and_one_hot_tokens() -> None:
    model = RidgeEnsemble([2, 3], members=1, ridge=1.0)
    x = model.features([(1, 2), (0, 0)])
    assert x.tolist() == [[1, 0, 1, 0, 0, 1], [1, 1, 0, 1, 0, 0]]
    with pytest.raises(ControllerError, match="sequences of 2 tokens"):
        model.features([(1, 2, 0)])
    with pytest.raises(ControllerError, match="fitted before it scores"):
        model.scores([(0, 0)])


def test_ensemble_ranks_unseen_sequences_like_the_reward() -> None:
    everything = list(itertools.product(*(range(n) for n in SIZES)))
    g = torch.Generator().manual_seed(0)
    seen = [everything[int(i)] for i in torch.randperm(len(everything), generator=g)[:60]]
    model = RidgeEnsemble(SIZES, members=4, ridge=0.3)
    model.fit(seen, [reward(t) for t in seen], torch.Generator().manual_seed(1))
    scores = model.scores(everything)
    assert scores.shape == (4, len(everything))
    truth = torch.tensor([reward(t) for t in everything], dtype=torch.float64)
    for member in scores:  # Spearman correlation of every member with the true reward
        ranks = torch.stack([member.argsort().argsort(), truth.argsort().argsort()]).double()
        assert torch.corrcoef(ranks)[0, 1] > 0.8
    assert not torch.equal(scores[0], scores[1])  # the members saw different resamples


def test_ensemble_rejects_bad_settings_and_data() -> None:
    with pytest.raises(ControllerError, match="at least 1 member"):
        RidgeEnsemble(SIZES, members=0, ridge=1.0)
    with pytest.raises(ControllerError, match="ridge penalty must be > 0"):
        RidgeEnsemble(SIZES, members=2, ridge=0.0)
    with pytest.raises(ControllerError, match="as many rewards as sequences"):
        RidgeEnsemble(SIZES, members=2, ridge=1.0).fit([(0, 0, 0, 0)], [], torch.Generator())
    with pytest.raises(ControllerError, match="screen must be >= 0"):
        build_config({"screen": -1})


def mean_reward_of_proposals(screen: int) -> float:
    """Mean true reward of 40 proposals made after the same 20 rewarded ones."""
    c = ReinforceController(decisions(), seed=0, config=build_config({"screen": screen, "screen_warmup": 20}))
    for _ in range(5):
        ps = c.propose(4)
        c.update(ps, [reward(p.tokens) for p in ps])
    proposed = [p for _ in range(10) for p in c.propose(4)]
    assert len({p.tokens for p in proposed}) == 40  # still never a repeat
    return sum(reward(p.tokens) for p in proposed) / len(proposed)


def test_screening_proposes_better_children_than_the_policy_alone() -> None:
    # the same seed makes the same first 20 children; from then on screening picks by the model
    assert mean_reward_of_proposals(10) > mean_reward_of_proposals(0) + 1.0


def test_screening_waits_for_the_warmup_and_presets_turn_it_off() -> None:
    plain = ReinforceController(decisions(), seed=3, config=build_config({"screen": 0}))
    screened = ReinforceController(decisions(), seed=3, config=build_config({"screen_warmup": 8}))
    for _ in range(2):  # before the warmup both sample the same policy with the same generator
        a, b = plain.propose(4), screened.propose(4)
        assert a == b
        plain.update(a, [reward(p.tokens) for p in a])
        screened.update(b, [reward(p.tokens) for p in b])
    assert plain.propose(4) != screened.propose(4)
    assert build_config({"preset": "zoph_le"}).screen == 0 and build_config({"preset": "enas"}).screen == 0


def test_history_and_seed_are_part_of_the_checkpoint() -> None:
    a = ReinforceController(decisions(), seed=7)
    for _ in range(4):
        ps = a.propose(4)
        a.update(ps, [reward(p.tokens) for p in ps])
    b = ReinforceController(decisions(), seed=1)
    b.load_bytes(a.to_bytes())
    assert b.history == a.history and len(b.history) == 16
    assert [p.tokens for p in a.propose(8)] == [p.tokens for p in b.propose(8)]


def stuck_controller(uniform: int, monkeypatch: pytest.MonkeyPatch, local: int = 0) -> ReinforceController:
    """A controller whose policy only ever samples sequences whose first token is 0, after 12 rewards
    that show the first token is worth most at 2."""
    settings = {"screen_uniform": uniform, "screen_warmup": 12, "screen_local": local}
    c = ReinforceController(decisions(), seed=0, config=build_config(settings))
    c.history = [((first, second, 0, 1), 10.0 * (first == 2)) for first in range(5) for second in (0, 1)]
    c.history += [((0, 2, 2, 2), 0.0), ((1, 2, 2, 2), 0.0)]
    c.seen.update(t for t, _ in c.history)
    sample = c._sample

    def policy_stuck_on_zero(n: int, tree: object = None) -> list:
        return [p for p in sample(n, tree) if p.tokens[0] == 0]  # type: ignore[arg-type]

    monkeypatch.setattr(c, "_sample", policy_stuck_on_zero)
    return c


def test_uniform_draws_let_screening_reach_what_the_policy_no_longer_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(p.tokens[0] == 0 for p in stuck_controller(0, monkeypatch).propose(8))
    c = stuck_controller(30, monkeypatch)
    proposed = c.propose(8)
    assert sum(p.tokens[0] == 2 for p in proposed) >= 6  # the model's favourite first token, never sampled
    assert len({p.tokens for p in proposed}) == 8 and not {p.tokens for p in proposed} & {t for t, _ in c.history}
    # a drawn sequence carries the policy's own log-prob and entropy, as if the policy had sampled it
    drawn = [p for p in proposed if p.tokens[0] == 2]
    with torch.no_grad():
        _, log_prob, entropy = c.policy(len(drawn), forced=torch.tensor([p.tokens for p in drawn]))
    assert [p.log_prob for p in drawn] == pytest.approx(log_prob.tolist())
    assert [p.entropy for p in drawn] == pytest.approx(entropy.tolist())
    with pytest.raises(ControllerError, match="screen_uniform must be >= 0"):
        build_config({"screen_uniform": -1})


def test_incumbent_neighbours_let_screening_search_around_the_best(monkeypatch: pytest.MonkeyPatch) -> None:
    c = stuck_controller(0, monkeypatch, local=1)
    proposed = c.propose(8)
    best = (2, 0, 0, 1)  # the first of the two best sequences in the history
    near = [p for p in proposed if p.tokens[0] == 2]
    assert len(near) >= 6  # the policy never samples first token 2: these come from the best's neighbourhood
    assert all(sum(a != b for a, b in zip(p.tokens, best, strict=True)) == 1 for p in near)
    assert len({p.tokens for p in proposed}) == 8 and not {p.tokens for p in proposed} & {t for t, _ in c.history}
    with torch.no_grad():
        _, log_prob, _ = c.policy(len(near), forced=torch.tensor([p.tokens for p in near]))
    assert [p.log_prob for p in near] == pytest.approx(log_prob.tolist())
    with pytest.raises(ControllerError, match="screen_local must be >= 0"):
        build_config({"screen_local": -1})


def test_random_prior_gives_unseen_values_a_spread_of_guesses() -> None:
    """Bootstrap members agree on a value never seen (weight 0 in every one); with ``prior`` each member
    shrinks towards its own random weights, so some rate the unseen value high and get it tried."""
    seen = [t for t in itertools.product(*(range(n) for n in SIZES)) if t[0] != 4][:300]
    rewards = [reward(t) for t in seen]
    column = 1 + 4  # the one-hot column of value 4 at position 0
    plain = RidgeEnsemble(SIZES, members=8, ridge=0.3)
    plain.fit(seen, rewards, torch.Generator().manual_seed(0))
    assert plain.weights is not None and torch.all(plain.weights[:, column] == 0)
    anchored = RidgeEnsemble(SIZES, members=8, ridge=0.3, prior=1.0)
    anchored.fit(seen, rewards, torch.Generator().manual_seed(0))
    assert anchored.weights is not None
    guesses = anchored.weights[:, column]
    assert guesses.min() < -0.2 and guesses.max() > 0.2  # members disagree about the unseen value
    # where there is data, the prior barely moves the fit: both rank the seen sequences alike
    a, b = plain.scores(seen).mean(0), anchored.scores(seen).mean(0)
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.98
    with pytest.raises(ControllerError, match="prior scale must be >= 0"):
        RidgeEnsemble(SIZES, members=1, ridge=0.3, prior=-1.0)
    with pytest.raises(ControllerError, match="screen_prior must be >= 0"):
        build_config({"screen_prior": -0.5})
