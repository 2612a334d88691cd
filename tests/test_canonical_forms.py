"""`mlp` and `macro` declare which specs build the same network, so repeated evaluations of one network are
grouped as one architecture (`l2l runs top`, `runs best`, the re-evaluation race) and its label is true."""

from __future__ import annotations

import torch

from l2l.runs.estimates import best_arch
from l2l.search_spaces import SearchSpace, Spec, load_space
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.macro import MacroSpace


def canon(space: SearchSpace, spec: Spec) -> Spec:
    same = space.canonical(spec)
    assert same is not None
    return same


def test_mlp_specs_differing_in_unused_decisions_are_one_architecture() -> None:
    space = load_space("mlp")
    names = [d.name for d in space.decisions()]
    one = space.decode([0, 4, 3, 1, 0, 2, 1, 0, 3])  # layers=1: the decisions of layers 2 and 3 are unused
    other = space.decode([0, 4, 3, 1, 1, 2, 1, 0, 3])
    assert names[:5] == ["layers", "width_0", "act_0", "width_1", "act_1"]
    assert space.describe(one) == space.describe(other) == "128elu dropout=0.0 lr=0.003"
    assert canon(space, one) == canon(space, other) == canon(space, canon(space, one))
    three = space.decode([2, 4, 3, 1, 0, 2, 1, 0, 3])  # every layer used: its own canonical spec
    assert space.canonical(three) == three
    two = space.decode([1, 4, 3, 1, 0, 2, 1, 0, 3])  # layer 3's choices unused
    assert space.canonical(two) == space.decode([1, 4, 3, 1, 0, 0, 0, 0, 3])
    found = best_arch([(0, (0, 4, 3, 1, 0, 2, 1, 0, 3), 0.9), (1, (0, 4, 3, 1, 1, 2, 1, 0, 3), 0.8)], space)
    assert (
        found is not None and found[2] and found[0].n == 2 and abs(found[0].mean - 0.85) < 1e-12
    )  # one network, twice
    apart = best_arch([(0, (0, 4, 3, 1, 0, 2, 1, 0, 3), 0.9), (1, (1, 4, 3, 1, 1, 2, 1, 0, 3), 0.8)], space)
    assert apart is not None and not apart[2]  # two networks


def test_mlp_layers_drop_the_choices_they_do_not_use() -> None:
    space = load_space("mlp", {"max_layers": 1, "hashed": True, "predicted": True, "low_rank": True})
    assert [d.name for d in space.decisions()][:6] == ["layers", "width_0", "act_0", "rank_0", "active_0", "learned_0"]
    hashed = space.decode([0, 2, 0, 3, 1, 2, 0, 0])  # hashed 0.2: neither predicted nor of lower rank
    assert canon(space, hashed).as_dict() == {**hashed.as_dict(), "rank_0": "full", "learned_0": "dense"}
    predicted = space.decode([0, 2, 0, 3, 0, 2, 0, 0])  # dense LSH, learned 1/4: keeps its full rank
    assert canon(space, predicted)["rank_0"] == "full" and canon(space, predicted)["learned_0"] == "1/4"
    low = space.decode([0, 2, 0, 3, 0, 0, 0, 0])  # rank 1/8 on its own: used
    assert space.canonical(low) == low
    constraints = Constraints.of(space)
    assert constraints is not None and constraints.enumerated  # small enough: counted in architectures
    # per width and activation: hashed (2 fractions), else predicted (3 shares), else dense at one of 5 ranks, but
    # of 4 for a 64 -> 8 layer, where 1/8 and 1/16 both build rank 1
    assert constraints.count() == 4 * (4 * (2 + 3 + 5) + (2 + 3 + 4)) * 4 * 5


def test_a_1x1_filter_in_macro_is_never_labelled_predicted_and_is_built_as_before() -> None:
    space = load_space("macro", {"layers": 1, "predicted": True, "low_rank": True})
    assert isinstance(space, MacroSpace)
    assert [d.name for d in space.decisions()] == ["l0_width", "l0_filters", "l0_inputs", "l0_rank", "l0_learned"]
    one = space.decode([0, 3, 2, 3])  # kernel 1, 64 filters, rank 1/4, learned 1/10
    (layer,) = space.layers_of(one)
    assert layer.learned == "dense" and layer.rank == "full"  # a dense full-rank conv, as stored runs built it
    assert space.describe(one) == "L0[1x64<-in]"
    assert canon(space, one) == space.decode([0, 3, 0, 0])  # the same network as "dense, full rank"
    ranked = space.decode([0, 3, 2, 0])  # kernel 1 at rank 1/4 on one input channel: full rank is 1, so dense
    assert canon(space, ranked) == space.decode([0, 3, 0, 0])
    wide = space.decode([1, 3, 2, 3])  # kernel 3: predicted, so its rank is unused
    assert space.layers_of(wide)[0].learned == "1/10" and canon(space, wide) == space.decode([1, 3, 0, 3])
    plain = load_space("macro")  # nothing to merge: no canonical form
    assert plain.canonical(plain.decode([0] * sum(d.width for d in plain.decisions()))) is None


def test_rank_choices_that_build_one_rank_are_one_architecture() -> None:
    """Ranks are clamped to [1, full]: several rank choices built one layer and were counted, ranked and
    proposed as different architectures."""
    mlp = load_space("mlp", {"max_layers": 1, "widths": "8", "low_rank": True})
    eighth, sixteenth = (mlp.decode([0, 0, 0, r, 0, 0]) for r in (3, 4))  # a 64 -> 8 layer at 1/8 and 1/16: rank 1
    assert canon(mlp, eighth) == canon(mlp, sixteenth) and canon(mlp, eighth)["rank_0"] == "1/8"
    constraints = Constraints.of(mlp)
    assert constraints is not None and constraints.count() == 4 * 4 * 4 * 5  # 4 distinct ranks, not 5
    macro = load_space("macro", {"layers": 2, "low_rank": True})
    decisions = list(macro.decisions())
    at = {d.name: sum(e.width for e in decisions[:k]) for k, d in enumerate(decisions)}  # token positions
    draw = torch.Generator().manual_seed(0)
    sizes = [d.n_choices for d in macro.decisions() for _ in range(d.width)]
    for _ in range(60):  # specs of one canonical form build networks of the same shapes, others of other shapes
        tokens = [int(torch.randint(n, (1,), generator=draw)) for n in sizes]
        spec = macro.decode(tokens)
        same = canon(macro, spec)
        shapes = [[tuple(p.shape) for p in m.parameters()] for m in (_net(macro, spec), _net(macro, same))]
        assert shapes[0] == shapes[1], (spec.as_dict(), same.as_dict())
        for i in (0, 1):  # a rank the canonical form keeps changes the network
            rank = at[f"l{i}_rank"]
            other = macro.decode([*tokens[:rank], (tokens[rank] + 1) % 5, *tokens[rank + 1 :]])
            if canon(macro, other) != same:
                assert [tuple(p.shape) for p in _net(macro, other).parameters()] != shapes[0]


def test_the_input_shapes_known_without_loading_are_the_datasets_own() -> None:
    from l2l.nas.data import load_dataset
    from l2l.nas.genotypes import INPUT_SHAPES

    for name in ("digits", "mnist1d", "synthetic"):  # cifar10's files are not on every machine
        assert load_dataset(name).input_shape == INPUT_SHAPES[name]


def _net(space: SearchSpace, spec: Spec) -> torch.nn.Module:
    from l2l.nas.macro import MacroNet

    assert isinstance(space, MacroSpace)
    return MacroNet(space.layers_of(spec), (1, 40), 10)
