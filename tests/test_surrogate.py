"""The surrogate that screens a strategy's proposals: the ridge ensemble, the GP, and what screening changes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from l2l.controllers import ControllerError, ReinforceController, ScreenConfig, ScreenedController, make_controller
from l2l.controllers.surrogate import HammingGP, RidgeEnsemble
from l2l.search_spaces import Decision

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
        ScreenConfig(screen=-1)
    with pytest.raises(ControllerError, match=r"screen: settings of screening; use the strategy reinforce\+"):
        make_controller("reinforce", decisions(), 0, {"screen": 4})


def screened(seed: int, **settings: object) -> ScreenedController:
    """REINFORCE wearing the screen, with screen ``settings``."""
    c = make_controller("reinforce+screen", decisions(), seed, settings)
    assert isinstance(c, ScreenedController) and isinstance(c.base, ReinforceController)
    return c


def policy_of(c: ScreenedController) -> ReinforceController:
    """The REINFORCE controller a screen wraps."""
    assert isinstance(c.base, ReinforceController)
    return c.base


def mean_reward_of_proposals(screen: int) -> float:
    """Mean true reward of 40 proposals made after the same 20 rewarded ones."""
    c = screened(0, screen=screen, screen_warmup=20)
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
    plain = make_controller("reinforce", decisions(), 3)
    wrapped = screened(3, screen_warmup=8)
    for _ in range(2):  # before the warmup both sample the same policy with the same generator
        a, b = plain.propose(4), wrapped.propose(4)
        assert a == b
        plain.update(a, [reward(p.tokens) for p in a])
        wrapped.update(b, [reward(p.tokens) for p in b])
    assert plain.propose(4) != wrapped.propose(4)
    # screen 0 or 1 turns it off: the wrapper then proposes exactly what the strategy would
    off, alone = screened(5, screen=0, screen_warmup=1), make_controller("reinforce", decisions(), 5)
    for _ in range(3):
        a, b = off.propose(4), alone.propose(4)
        assert a == b
        off.update(a, [reward(p.tokens) for p in a])
        alone.update(b, [reward(p.tokens) for p in b])


@pytest.mark.parametrize("model", ["ridge", "gp"])
def test_history_and_seed_are_part_of_the_checkpoint(model: str) -> None:
    a = screened(7, screen_model=model, screen_gp_from=0)
    for _ in range(4):
        ps = a.propose(4)
        a.update(ps, [reward(p.tokens) for p in ps])
    b = screened(1, screen_model=model, screen_gp_from=0)
    b.load_bytes(a.to_bytes())
    assert b.history == a.history and len(b.history) == 16
    assert [p.tokens for p in a.propose(8)] == [p.tokens for p in b.propose(8)]


def stuck_controller(uniform: int, monkeypatch: pytest.MonkeyPatch, local: int = 0) -> ScreenedController:
    """A screened controller whose policy only ever samples sequences whose first token is 0, after 12
    rewards that show the first token is worth most at 2."""
    c = screened(0, screen_uniform=uniform, screen_warmup=12, screen_local=local)
    history = [((first, second, 0, 1), 10.0 * (first == 2)) for first in range(5) for second in (0, 1)]
    history += [((0, 2, 2, 2), 0.0), ((1, 2, 2, 2), 0.0)]
    for tokens, r in history:  # as if the strategy had proposed and learned from these
        (p,) = c.base.adopt([(tokens, None)])
        c.update([p], [r])
    candidates = c.base.candidates

    def policy_stuck_on_zero(n: int) -> list:
        return [p for p in candidates(n) if p.tokens[0] == 0]

    monkeypatch.setattr(c.base, "candidates", policy_stuck_on_zero)
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
        _, log_prob, entropy = policy_of(c).policy(len(drawn), forced=torch.tensor([p.tokens for p in drawn]))
    assert [p.log_prob for p in drawn] == pytest.approx(log_prob.tolist())
    assert [p.entropy for p in drawn] == pytest.approx(entropy.tolist())
    with pytest.raises(ControllerError, match="screen_uniform must be >= 0"):
        ScreenConfig(screen_uniform=-1)


def test_incumbent_neighbours_let_screening_search_around_the_best(monkeypatch: pytest.MonkeyPatch) -> None:
    c = stuck_controller(0, monkeypatch, local=1)
    proposed = c.propose(8)
    best = (2, 0, 0, 1)  # the first of the two best sequences in the history
    near = [p for p in proposed if p.tokens[0] == 2]
    assert len(near) >= 6  # the policy never samples first token 2: these come from the best's neighbourhood
    assert all(sum(a != b for a, b in zip(p.tokens, best, strict=True)) == 1 for p in near)
    assert len({p.tokens for p in proposed}) == 8 and not {p.tokens for p in proposed} & {t for t, _ in c.history}
    with torch.no_grad():
        _, log_prob, _ = policy_of(c).policy(len(near), forced=torch.tensor([p.tokens for p in near]))
    assert [p.log_prob for p in near] == pytest.approx(log_prob.tolist())
    with pytest.raises(ControllerError, match="screen_local must be >= 0"):
        ScreenConfig(screen_local=-1)


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
        ScreenConfig(screen_prior=-0.5)


def explicit_kernel(a: list[tuple[int, ...]], b: list[tuple[int, ...]], mix: float, scale: float) -> torch.Tensor:
    """The GP's kernel written out pair by pair."""
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, s in enumerate(a):
        for j, t in enumerate(b):
            agree = sum(x == y for x, y in zip(s, t, strict=True)) / len(s)
            out[i, j] = mix * agree + (1 - mix) * math.exp(-scale * (1 - agree))
    return out


def test_gp_posterior_matches_the_closed_form() -> None:
    everything = list(itertools.product(*(range(n) for n in SIZES)))
    g = torch.Generator().manual_seed(2)
    order = torch.randperm(len(everything), generator=g).tolist()
    seen, unseen = [everything[i] for i in order[:40]], [everything[i] for i in order[40:52]]
    model = HammingGP(SIZES, members=3, mix=0.3)
    model.fit(seen, [reward(t) for t in seen], torch.Generator().manual_seed(0))
    assert model.scale in HammingGP.SCALES and model.noise in HammingGP.NOISES
    y = torch.tensor([reward(t) for t in seen], dtype=torch.float64)
    y = (y - y.mean()) / y.std(unbiased=False)
    k = explicit_kernel(seen, seen, 0.3, model.scale) + model.noise * torch.eye(len(seen), dtype=torch.float64)
    cross = explicit_kernel(seen, unseen, 0.3, model.scale)
    mean = cross.T @ torch.linalg.solve(k, y)
    cov = explicit_kernel(unseen, unseen, 0.3, model.scale) - cross.T @ torch.linalg.solve(k, cross)
    got_mean, got_cov = model.posterior(unseen)
    assert torch.allclose(got_mean, mean, atol=1e-8) and torch.allclose(got_cov, cov, atol=1e-8)

    # the chosen (scale, noise) has the highest log marginal likelihood of the grid
    def evidence(scale: float, noise: float) -> float:
        kk = explicit_kernel(seen, seen, 0.3, scale) + noise * torch.eye(len(seen), dtype=torch.float64)
        return float(-0.5 * y @ torch.linalg.solve(kk, y) - 0.5 * torch.logdet(kk))

    grid = {(s, n): evidence(s, n) for s in HammingGP.SCALES for n in HammingGP.NOISES}
    assert max(grid, key=grid.__getitem__) == (model.scale, model.noise)


def test_gp_draws_follow_the_posterior() -> None:
    everything = list(itertools.product(*(range(n) for n in SIZES)))
    seen, pool = everything[::37], everything[5::211]
    model = HammingGP(SIZES, members=20000)
    model.fit(seen, [reward(t) for t in seen], torch.Generator().manual_seed(0))
    draws = model.scores(pool)
    assert draws.shape == (20000, len(pool))
    mean, cov = model.posterior(pool)
    assert torch.allclose(draws.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(draws.T), cov, atol=0.03)  # joint draws: the covariances, not only variances
    again = HammingGP(SIZES, members=20000)
    again.fit(seen, [reward(t) for t in seen], torch.Generator().manual_seed(0))
    assert torch.equal(again.scores(pool), draws)  # seeded by the fit's generator: a resumed run draws the same


def test_gp_learns_an_interaction_the_additive_model_cannot() -> None:
    """A reward that is high only where two positions agree: no value is better on its own, so a one-hot
    linear model ranks unseen sequences at chance, while the GP's product kernel ranks them."""
    everything = list(itertools.product(*(range(n) for n in SIZES)))

    def agree(t: tuple[int, ...]) -> float:
        return 1.0 if t[0] == t[1] else 0.0

    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(everything), generator=g).tolist()
    seen, unseen = [everything[i] for i in order[:150]], [everything[i] for i in order[150:]]
    truth = torch.tensor([agree(t) for t in unseen], dtype=torch.bool)

    def auc(scores: torch.Tensor) -> float:  # chance that a high-reward sequence outscores a low one
        return float((scores[truth].unsqueeze(1) > scores[~truth].unsqueeze(0)).double().mean())

    ridge = RidgeEnsemble(SIZES, members=1, ridge=0.3)
    ridge.fit(seen, [agree(t) for t in seen], torch.Generator().manual_seed(1))
    gp = HammingGP(SIZES, members=1)
    gp.fit(seen, [agree(t) for t in seen], torch.Generator().manual_seed(1))
    assert abs(auc(ridge.scores(unseen)[0]) - 0.5) < 0.15
    assert auc(gp.posterior(unseen)[0]) > 0.9


def test_gp_setting_picks_the_model_and_bad_values_are_rejected() -> None:
    def surrogates(settings: dict[str, object]) -> list[type]:
        """The surrogate's type at each of the first 5 screened proposals (after 4, 8, ... 20 rewards)."""
        c = screened(0, screen_warmup=4, **settings)
        out = []
        for _ in range(6):
            ps = c.propose(4)
            c.update(ps, [reward(p.tokens) for p in ps])
            if c.surrogate is not None:
                out.append(type(c.surrogate))
        return out

    assert surrogates({"screen_model": "gp", "screen_gp_from": 0}) == [HammingGP] * 5
    assert surrogates({"screen_model": "ridge", "screen_gp_from": 0}) == [RidgeEnsemble] * 5
    # by default the ridge model screens until screen_gp_from rewards have arrived, then the GP
    assert surrogates({"screen_gp_from": 12}) == [RidgeEnsemble] * 2 + [HammingGP] * 3
    assert ScreenConfig().screen_model == "gp" and ScreenConfig().screen_gp_from == 100
    with pytest.raises(ControllerError, match="screen_gp_from must be >= 0, got -1"):
        make_controller("reinforce+screen", decisions(), 0, {"screen_gp_from": -1})
    with pytest.raises(ControllerError, match="unknown screen_model 'forest'; known: gp, ridge"):
        make_controller("reinforce+screen", decisions(), 0, {"screen_model": "forest"})
    with pytest.raises(ControllerError, match=r"screen_mix must be in \[0, 1\], got 1.5"):
        make_controller("reinforce+screen", decisions(), 0, {"screen_mix": 1.5})
    with pytest.raises(ControllerError, match="at least 1 member"):
        HammingGP(SIZES, members=0)
    with pytest.raises(ControllerError, match="additive share"):
        HammingGP(SIZES, members=1, mix=-0.1)
    with pytest.raises(ControllerError, match="as many rewards as sequences"):
        HammingGP(SIZES, members=1).fit([(0, 0, 0, 0)], [1.0, 2.0], torch.Generator())
    with pytest.raises(ControllerError, match="fitted before it scores"):
        HammingGP(SIZES, members=1).scores([(0, 0, 0, 0)])
    with pytest.raises(ControllerError, match="sequences of 4 tokens"):
        HammingGP(SIZES, members=1).fit([(0, 0)], [1.0], torch.Generator())


def test_gp_keeps_the_best_and_the_latest_past_max_points() -> None:
    everything = list(itertools.product(*(range(n) for n in SIZES)))
    history = everything[:200]
    rewards = [float(i % 50) for i in range(200)]  # the best (49) at 49, 99, 149 and 199 (one of the latest)
    model = HammingGP(SIZES, members=1, max_points=20)
    model.fit(history, rewards, torch.Generator().manual_seed(0))
    kept = {tuple(row) for row in model._x.tolist()} if model._x is not None else set()
    latest = set(history[190:])
    best = {history[i] for i in (49, 99, 149, 48, 98, 148, 47, 97, 147, 46)}  # ties: the earliest first
    assert len(kept) == 20 and kept == latest | best
    with pytest.raises(ControllerError, match="max_points >= 2"):
        HammingGP(SIZES, members=1, max_points=1)


@pytest.mark.parametrize("strategy", ["evolution+screen", "random+screen"])
def test_screen_never_spends_a_child_on_a_sequence_it_has_a_reward_for(strategy: str) -> None:
    # evolution's mutants often are cells it trained before; the screen picks only new ones
    c = make_controller(strategy, decisions()[:2], 0, {"screen_warmup": 4})  # 25 sequences in all
    assert isinstance(c, ScreenedController)
    rewarded: set[tuple[int, ...]] = set()
    for _ in range(5):
        ps = c.propose(4)
        if c.surrogate is not None:
            assert not {p.tokens for p in ps} & rewarded and len({p.tokens for p in ps}) == 4
        c.update(ps, [reward((*p.tokens, 0, 0)) for p in ps])
        rewarded |= {p.tokens for p in ps}
    # once fewer new sequences are left than asked for, the strategy's own proposals fill the batch
    for _ in range(3):
        ps = c.propose(4)
        assert len(ps) == 4
        c.update(ps, [reward((*p.tokens, 0, 0)) for p in ps])


@pytest.mark.parametrize("strategy", ["evolution+screen", "random+screen", "tpe+screen"])
def test_an_asynchronous_screen_never_proposes_a_sequence_still_training(strategy: str) -> None:
    # asynchronous: proposals go out one at a time and rewards come back later; a pick still in flight has no
    # reward yet, and the same surrogate would pick it again
    c = make_controller(strategy, decisions()[:2], 0, {"screen_warmup": 4})  # 25 sequences in all
    warm = c.propose(4)
    c.update(warm, [reward((*p.tokens, 0, 0)) for p in warm])
    flying = [c.propose(1)[0] for _ in range(6)]
    assert isinstance(c, ScreenedController) and c.surrogate is not None
    assert len({p.tokens for p in flying}) == 6, [p.tokens for p in flying]
    c.update(flying[:3], [reward((*p.tokens, 0, 0)) for p in flying[:3]])
    later = [c.propose(1)[0] for _ in range(4)]
    assert not {p.tokens for p in later} & {p.tokens for p in warm + flying}


@pytest.mark.parametrize("strategy", ["evolution+screen", "tpe+screen"])
def test_sequences_in_flight_stay_out_of_the_screen_from_the_warm_up_on_and_through_a_resume(strategy: str) -> None:
    # proposals of the warm-up were not counted (the screen re-picked one still training in half the seeds), and a
    # resumed search restored an empty list (`restore` forgot it)
    from l2l.controllers.base import Ledger

    for seed in range(6):
        c = make_controller(strategy, decisions()[:2], seed, {"screen_warmup": 4})
        early = c.propose(8)  # before screening starts: four learned from, four still training
        c.update(early[:4], [reward((*p.tokens, 0, 0)) for p in early[:4]])
        screened = [c.propose(1)[0] for _ in range(4)]
        assert not {p.tokens for p in screened} & {p.tokens for p in early[4:]}, seed
        b = make_controller(strategy, decisions()[:2], seed + 100, {"screen_warmup": 4})
        learned = [(p.tokens, reward((*p.tokens, 0, 0))) for p in early[:4]]
        proposed = [p.tokens for p in early + screened]
        b.load_checkpoint(c.checkpoint_bytes(), Ledger(proposed, learned))  # as a resumed search restores it
        flying = {p.tokens for p in early[4:] + screened}
        assert not {b.propose(1)[0].tokens for _ in range(4)} & flying, seed
