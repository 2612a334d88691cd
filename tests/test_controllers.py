"""Controllers: the LSTM policy's probabilities, REINFORCE's learning, state round trips, settings."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from l2l.controllers import ControllerError, RandomController, ReinforceController, make_controller
from l2l.controllers.policy import LSTMPolicy
from l2l.controllers.reinforce_config import PRESETS, build_config
from l2l.controllers.rewards import get_transform
from l2l.controllers.unique import SeenTree
from l2l.search_spaces import Context, Decision, load_space, token_sizes

SMALL = [
    Decision.categorical("a", ["x", "y", "z"]),
    Decision.anchor("s0", 0),
    Decision.categorical("b", ["p", "q"]),
    Decision.anchor("s1", 1),
    Decision.anchor("s2", 2),
]


def all_sequences(decisions: list[Decision]) -> list[tuple[int, ...]]:
    ranges = [range(k) for k in token_sizes(decisions)]
    return list(itertools.product(*ranges))


@pytest.mark.parametrize("shape", [{}, {"temperature": 5.0, "tanh_constant": 2.5}])
def test_policy_is_a_distribution_over_all_sequences(shape: dict[str, float]) -> None:
    torch.manual_seed(0)
    policy = LSTMPolicy(SMALL, hidden_size=16, lstm_layers=2, init_range=0.5, **shape)
    seqs = all_sequences(SMALL)
    with torch.no_grad():
        _, log_prob, entropy = policy(len(seqs), forced=torch.tensor(seqs))
    p = log_prob.exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    # the policy's reported entropy is the sum of per-step entropies; its expectation is the sequence entropy
    assert float((p * entropy).sum()) == pytest.approx(float(-(p * log_prob).sum()), rel=1e-4)


def test_sampled_log_prob_matches_rescoring() -> None:
    policy = LSTMPolicy(SMALL, hidden_size=8)
    gen = torch.Generator().manual_seed(3)
    tokens, log_prob, _ = policy(64, generator=gen)
    _, again, _ = policy(64, forced=tokens)
    assert torch.allclose(log_prob, again, atol=1e-6)
    assert tokens.shape == (64, 5)
    assert int(tokens[:, 0].max()) <= 2 and int(tokens[:, 1:].max()) <= 1


def test_sampling_follows_the_probabilities() -> None:
    policy = LSTMPolicy(SMALL, hidden_size=8, init_range=1.0)
    gen = torch.Generator().manual_seed(0)
    tokens, _, _ = policy(20000, generator=gen)
    seqs = all_sequences(SMALL)
    _, log_prob, _ = policy(len(seqs), forced=torch.tensor(seqs))
    first_token = torch.zeros(3)
    for seq, lp in zip(seqs, log_prob.exp(), strict=True):
        first_token[seq[0]] += lp.detach()
    empirical = torch.bincount(tokens[:, 0], minlength=3).float() / 20000
    assert torch.allclose(empirical, first_token, atol=0.015)


def test_anchor_attention_uses_earlier_hidden_states() -> None:
    policy = LSTMPolicy(SMALL, hidden_size=8)
    seqs = torch.tensor(all_sequences(SMALL))
    _, lp, _ = policy(len(seqs), forced=seqs)
    lp.sum().backward()
    for name in ("w_prev", "w_curr", "v"):
        grad = getattr(policy, name).weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_anchor_out_of_range_is_rejected() -> None:
    with pytest.raises(ControllerError, match="anchor 'bad' refers to 2 earlier anchors, only 0 exist"):
        LSTMPolicy([Decision.categorical("a", ["x"]), Decision.anchor("bad", 2)])


def children_to_optimum(strategy: str, seed: int, budget: int, batch: int = 10) -> int | None:
    space = load_space("toy")
    target = space.optimum()
    controller = make_controller(strategy, space.decisions(), seed)
    seen = 0
    while seen < budget:
        proposals = controller.propose(batch)
        rewards = []
        for p in proposals:
            seen += 1
            if p.tokens == target:
                return seen
            rewards.append(space.evaluate(space.decode(p.tokens), Context()).reward)
        controller.update(proposals, rewards)
    return None


def test_reinforce_finds_the_toy_optimum_far_faster_than_random() -> None:
    budget = 1500
    reinforce = [children_to_optimum("reinforce", s, budget) for s in range(5)]
    random = [children_to_optimum("random", s, budget) for s in range(5)]
    assert all(n is not None and n <= 600 for n in reinforce), reinforce
    # the toy space has 13,824 candidates: random search needs ~13,824 children on average
    assert sum(n is not None for n in random) <= 1, random
    found = sorted(n for n in reinforce if n is not None)
    assert found[len(found) // 2] < budget / 4


def test_update_moves_probability_towards_rewarded_sequence() -> None:
    decisions = [Decision.categorical("a", ["x", "y"])]
    c = ReinforceController(decisions, seed=0)
    forced = torch.tensor([[0], [1]])
    before = c.policy(2, forced=forced)[1].exp()
    proposals = c.propose(16)
    c.update(proposals, [1.0 if p.tokens == (1,) else 0.0 for p in proposals])
    after = c.policy(2, forced=forced)[1].exp()
    assert after[1] > before[1]
    assert c.policy_version == 1
    assert all(p.policy_version == 0 for p in proposals)


def test_baseline_is_an_exponential_moving_average() -> None:
    c = ReinforceController(
        [Decision.categorical("a", ["x", "y"])], seed=0, config=build_config({"baseline_decay": 0.5})
    )
    s1 = c.update(c.propose(2), [1.0, 3.0])
    assert s1.baseline == pytest.approx(2.0) and c.baseline.value == pytest.approx(2.0)
    s2 = c.update(c.propose(2), [4.0, 4.0])
    assert s2.baseline == pytest.approx(2.0) and c.baseline.value == pytest.approx(3.0)
    assert s2.mean_reward == pytest.approx(4.0)


@pytest.mark.parametrize("strategy", ["reinforce", "random", "reinforce+screen", "evolution+screen"])
def test_state_round_trip_continues_identically(strategy: str) -> None:
    space = load_space("toy")
    a = make_controller(strategy, space.decisions(), seed=5)
    for _ in range(3):
        ps = a.propose(4)
        a.update(ps, [sum(p.tokens) / 10 for p in ps])
    blob = a.to_bytes()
    b = make_controller(strategy, space.decisions(), seed=99)
    b.load_bytes(blob)
    pa, pb = a.propose(6), b.propose(6)
    assert pa == pb
    sa = a.update(pa, [1.0, 0, 0, 1, 0, 1])
    sb = b.update(pb, [1.0, 0, 0, 1, 0, 1])
    assert sa == sb


def test_checkpoints_of_l2l_0_1_still_load() -> None:
    # l2l 0.1 wrote the seen table as lists of lists, the screen's settings into REINFORCE's config and the
    # screen's history into REINFORCE's state
    space = load_space("toy")
    a = ReinforceController(space.decisions(), seed=5)
    for _ in range(4):
        ps = a.propose(4)
        a.update(ps, [sum(p.tokens) / 10 for p in ps])
    state = a.state_dict()
    assert isinstance(state["seen"], torch.Tensor) and state["seen"].shape == (16, len(ps[0].tokens))
    old = {**state, "seen": state["seen"].tolist(), "history": [[0.5, list(t)] for t in sorted(a.seen)]}
    old["config"] = {**state["config"], "screen": 10, "screen_model": "gp"}
    b = ReinforceController(space.decisions(), seed=5)
    b.load_state_dict(old)
    assert b.seen == a.seen
    assert a.propose(4) == b.propose(4)


def test_checkpoint_of_another_kind_is_rejected() -> None:
    space = load_space("toy")
    blob = RandomController(space.decisions(), 0).to_bytes()
    with pytest.raises(ControllerError, match="checkpoint is of a 'random' controller, not 'reinforce'"):
        ReinforceController(space.decisions(), 0).load_bytes(blob)
    with pytest.raises(ControllerError, match="cannot read reinforce controller checkpoint"):
        ReinforceController(space.decisions(), 0).load_bytes(b"not a checkpoint")


def test_same_seed_same_proposals() -> None:
    space = load_space("toy")
    assert make_controller("reinforce", space.decisions(), 7).propose(5) == make_controller(
        "reinforce", space.decisions(), 7
    ).propose(5)
    assert make_controller("reinforce", space.decisions(), 7).propose(5) != make_controller(
        "reinforce", space.decisions(), 8
    ).propose(5)


def test_random_controller_is_uniform() -> None:
    c = RandomController([Decision.categorical("a", ["x", "y", "z", "w"])], seed=0)
    props = c.propose(8000)
    counts = torch.bincount(torch.tensor([p.tokens[0] for p in props]), minlength=4).float() / 8000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)
    assert props[0].log_prob == pytest.approx(-math.log(4))
    assert c.update(props[:2], [0.1, 0.2]).entropy == pytest.approx(math.log(4))


def test_random_search_reports_the_entropy_of_what_it_draws_from() -> None:
    from l2l.search_spaces.constraints import Constraints

    space = load_space("nb201", {"canonical": True})  # 15,625 sequences, 6,466 architectures
    c = RandomController(list(space.decisions()), seed=0)
    c.constrain(Constraints.of(space))
    props = c.propose(2)
    assert props[0].entropy == pytest.approx(math.log(6466))
    assert c.update(props, [0.1, 0.2]).entropy == pytest.approx(math.log(6466))  # not ln 15,625


def test_presets_and_settings() -> None:
    assert build_config({"preset": "zoph_le"}).hidden_size == 35
    cfg = build_config({"preset": "enas", "lr": 0.01})
    assert (cfg.temperature, cfg.tanh_constant, cfg.lr) == (5.0, 2.5, 0.01)
    assert set(PRESETS) == {"zoph_le", "enas"}
    with pytest.raises(ControllerError, match=r"unknown reinforce setting\(s\) \['lrr'\]"):
        build_config({"lrr": 1})
    with pytest.raises(ControllerError, match="unknown controller preset 'nas'"):
        build_config({"preset": "nas"})
    with pytest.raises(ControllerError, match="lr must be > 0"):
        build_config({"lr": 0})
    with pytest.raises(
        ControllerError, match="unknown strategy 'ppo2'; known: reinforce, ppo, random, evolution, tpe, gp, qmc"
    ):
        make_controller("ppo2", SMALL, 0)
    with pytest.raises(ControllerError, match="update got 1 proposals but 2 rewards"):
        ReinforceController(SMALL, 0).update(ReinforceController(SMALL, 0).propose(1), [1.0, 2.0])


def test_reward_transforms() -> None:
    m = {"reward": 0.9, "val_acc": 0.8, "val_loss": 0.5}
    assert get_transform("reward")(m) == 0.9
    assert get_transform("accuracy")(m) == 0.8
    assert get_transform("cubed")(m) == pytest.approx(0.512)
    assert get_transform("neg_val_loss")(m) == -0.5
    assert get_transform("math:fsum")([1.0, 2.0]) == 3.0  # type: ignore[arg-type]
    with pytest.raises(ControllerError, match="unknown reward transform 'acc'"):
        get_transform("acc")
    with pytest.raises(ControllerError, match="cannot be imported"):
        get_transform("no_such_module_xyz:f")
    with pytest.raises(
        ControllerError, match=r"'mnas\(flops,5e3\)': mnas takes three arguments, mnas\(COST,TARGET,W\)"
    ):
        get_transform("mnas(flops,5e3)")
    with pytest.raises(ControllerError, match="unknown reward transform 'acc'"):
        make_controller("random", SMALL, 0, {"reward_transform": "acc"})
    c = make_controller("reinforce", SMALL, 0, {"reward_transform": "cubed"})
    assert c.reward_of(m) == pytest.approx(0.512)


def test_unique_sampling_never_repeats_until_the_space_runs_out() -> None:
    decisions = [Decision.categorical("a", ["x", "y", "z"]), Decision.categorical("b", ["p", "q"])]
    c = ReinforceController(decisions, seed=0, config=build_config({"unique": True}))
    first = [p.tokens for p in c.propose(4)] + [p.tokens for p in c.propose(2)]
    assert len(set(first)) == 6  # all six sequences, none twice
    assert len(c.propose(3)) == 3  # exhausted: repeats are allowed rather than failing
    again = ReinforceController(decisions, seed=0, config=build_config({"unique": False}))
    assert len({p.tokens for p in again.propose(30)}) <= 6


def test_unique_sampling_covers_anchor_spaces_exactly() -> None:
    # 3 choices x anchors with 1 and 2 earlier anchors: 3 * 2 * 4 = 24 distinct sequences
    decisions = [
        Decision.categorical("op", ["a", "b", "c"]),
        Decision.anchor("l0", 0),
        Decision.anchor("l1", 1),
        Decision.anchor("l2", 2),
    ]
    c = ReinforceController(decisions, seed=3, config=build_config({"unique": True}))
    got = [p.tokens for _ in range(6) for p in c.propose(4)]
    assert len(set(got)) == 24
    assert SeenTree(token_sizes(decisions), got).exhausted


def test_restricted_sampling_follows_the_policy_renormalized() -> None:
    decisions = [Decision.categorical("a", ["x", "y", "z", "w"])]
    c = ReinforceController(decisions, seed=0, config=build_config({"unique": True}))
    with torch.no_grad():
        head = c.policy.heads[0]
        assert isinstance(head, torch.nn.Linear)
        head.bias.copy_(torch.tensor([3.0, 1.0, 0.0, -1.0]))
        head.weight.zero_()
    probs = c.policy(4, forced=torch.arange(4)[:, None])[1].detach().exp()  # temperature etc. applied
    assert probs[0] > 0.5
    tree = SeenTree([4], [(0,)])  # the favourite is taken: the rest keep their relative odds
    tokens, log_prob, _ = c.policy(20000, generator=torch.Generator().manual_seed(1), allowed=tree.allowed)
    freq = torch.bincount(tokens[:, 0], minlength=4).float() / 20000
    assert freq[0] == 0
    expected = probs[1:] / probs[1:].sum()
    assert torch.allclose(freq[1:], expected, atol=0.015)
    # the reported log-prob is the unrestricted policy's, as the update recomputes it
    assert torch.allclose(log_prob.exp(), probs[tokens[:, 0]], atol=1e-5)


def test_unique_sampling_stays_cheap_when_the_policy_has_collapsed() -> None:
    decisions = [Decision.categorical(f"d{i}", ["a", "b", "c"]) for i in range(5)]
    c = ReinforceController(decisions, seed=0, config=build_config({"unique": True}))
    with torch.no_grad():
        for head in c.policy.heads:
            assert isinstance(head, torch.nn.Linear)
            head.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))  # almost all mass on one sequence
    calls = 0
    forward = c.policy.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return forward(*args, **kwargs)

    c.policy.forward = counting  # type: ignore[method-assign]
    got = [p.tokens for _ in range(10) for p in c.propose(5)]
    assert len(set(got)) == 50
    assert calls <= 60  # rejection sampling would need ~1e13 draws for the second sequence


def test_elite_keeps_the_best_distinct_sequences_and_pulls_the_policy_to_them() -> None:
    decisions = [Decision.categorical("a", [str(i) for i in range(8)])]
    c = ReinforceController(decisions, seed=0, config=build_config({"elite_size": 2, "lr": 0.05}))
    props = c.propose(8)
    rewards = [float(p.tokens[0] == 5) + 0.1 * float(p.tokens[0] == 2) for p in props]
    c.update(props, rewards)
    assert c.elite[0][0] == max(rewards) and c.elite[0][1] in {p.tokens for p in props}
    best = c.elite[0][1]
    before = float(c.policy(1, forced=torch.tensor([best]))[1].detach().exp())
    for _ in range(5):
        c.update(c.propose(4), [0.0] * 4)  # no new signal: only the elite term moves the policy
    after = float(c.policy(1, forced=torch.tensor([best]))[1].detach().exp())
    assert after > before
    assert len(c.elite) == 2 and c.elite[0][0] >= c.elite[1][0]


def test_ppo_clips_the_ratio() -> None:
    from l2l.controllers import PPOController

    decisions = [Decision.categorical("a", ["x", "y"])]
    c = make_controller("ppo", decisions, 0, {"clip": 0.1, "epochs": 100, "lr": 0.001, "elite_size": 0})
    assert isinstance(c, PPOController)
    props = c.propose(8)
    old = {p.tokens: p.log_prob for p in props}
    c.update(props, [1.0 if p.tokens == (0,) else 0.0 for p in props])
    new = c.policy(2, forced=torch.tensor([[0], [1]]))[1].detach()
    # a hundred epochs on one batch stall near the clip boundary (Adam's momentum overshoots it a little)
    assert (0,) in old and (1,) in old
    assert 1.1 < float((new[0] - old[(0,)]).exp()) < 1.35
    unclipped = make_controller("ppo", decisions, 0, {"clip": 0.99, "epochs": 100, "lr": 0.001, "elite_size": 0})
    assert isinstance(unclipped, PPOController)
    props = unclipped.propose(8)
    unclipped.update(props, [1.0 if p.tokens == (0,) else 0.0 for p in props])
    far = unclipped.policy(2, forced=torch.tensor([[0], [1]]))[1].detach()
    assert float((far[0] - old[(0,)]).exp()) > 1.8  # without the clip the same steps run much further
    with pytest.raises(ControllerError, match=r"unknown ppo setting\(s\) \['clipp'\]"):
        make_controller("ppo", decisions, 0, {"clipp": 0.1})
    with pytest.raises(ControllerError, match="clip must be in"):
        make_controller("ppo", decisions, 0, {"clip": 1.5})
