"""Simplification keeps the update identical; functional hashing joins equal rules and separates different ones."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.optsearch.functional import evaluate
from l2l.optsearch.language import BINARY, DECAYS, OPERANDS, UNARY, Rule, Unit, parse, to_formula
from l2l.optsearch.presets import PRESETS
from l2l.optsearch.simplify import RANDOM_TOKENS, functional_hash, simplified_rule, structural_key
from l2l.optsearch.vocabulary import STATISTICS, Step

DETERMINISTIC_OPERANDS = [o for o in OPERANDS if o not in RANDOM_TOKENS]
DETERMINISTIC_UNARY = [u for u in UNARY if u not in RANDOM_TOKENS]


@st.composite
def deterministic_rules(draw: st.DrawFn) -> Rule:
    units = []
    for i in range(draw(st.integers(1, 4))):
        operands = DETERMINISTIC_OPERANDS + [f"u{k}" for k in range(1, i + 1)]
        # favour the tokens the identities are about, so the rewrites are exercised often
        unary = st.sampled_from(["identity", "sign", "neg", *DETERMINISTIC_UNARY])
        operand = st.sampled_from(["one", "sign_g", *operands])
        binary = st.sampled_from(["keep", "mul", *BINARY])
        units.append(Unit(draw(operand), draw(operand), draw(unary), draw(unary), draw(binary)))
    return Rule(tuple(units), draw(st.sampled_from([None, *DECAYS])), draw(st.booleans()))


def _probe_step() -> Step:
    gen = torch.Generator().manual_seed(3)
    shapes = [(5,), (2, 3)]

    def tensors(positive: bool = False) -> list[torch.Tensor]:
        out = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        return [t.abs() for t in out] if positive else out

    stats = {k: tensors(positive=k in ("exp_avg_sq", "square_avg")) for k in STATISTICS}
    group = {"betas": (0.9, 0.999, 0.999), "alpha": 0.99, "eps": 1e-8, "noise_std": 0.01, "total_steps": 7,
             "cycles": 2}  # fmt: skip
    return Step(tensors(), tensors(), stats, [3.0, 3.0], 2.0, group)


def _update(rule: Rule, step: Step) -> float | list[torch.Tensor]:
    return evaluate(rule, lambda name: OPERANDS[name].compute(step), step.params)


def _same(a: float | list[torch.Tensor], b: float | list[torch.Tensor]) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    return all(torch.equal(x.nan_to_num(7.0, 8.0, 9.0), y.nan_to_num(7.0, 8.0, 9.0)) for x, y in zip(a, b, strict=True))


@given(deterministic_rules())
@settings(max_examples=300, deadline=None)
def test_simplification_keeps_the_update_identical(rule: Rule) -> None:
    step = _probe_step()
    simple = simplified_rule(rule)
    assert _same(_update(rule, step), _update(simple, step)), f"{rule} -> {simple}"
    assert (simple.decay, simple.weight_decay) == (rule.decay, rule.weight_decay)
    assert simplified_rule(simple) == simple  # a fixed point


def test_simplification_rewrites_what_it_promises() -> None:
    cases = {
        "g one sign sign keep ; u1 one sign identity keep": "lr * sign(g)",
        "m one identity identity mul": "lr * m",
        "one m identity neg mul ; u1 one neg identity keep": "lr * m",
        "sign_m two sign sign mul": "lr * sign(m)",
        "v m3 identity identity add ; g one identity identity keep": "lr * g",
        "m g identity identity add": "lr * (g + m)",
        "m one identity sqrt mul": "lr * m",  # sqrt|1| is 1: it was left in a found rule's formula
    }
    for text, formula in cases.items():
        assert to_formula(simplified_rule(parse(text))) == formula, text
    # random draws are never dropped: keep(x, drop(y)) still draws the mask
    assert "drop" in str(simplified_rule(parse("g m identity drop0.1 keep")))
    # pow(a, b) prints as sign(a)|a|^b: where a is a sign already, not as sign(sign(a)) (a found rule's formula)
    found = to_formula(parse("ipol rd sign drop0.3 pow ; decay=linear"))
    assert "sign(sign(" not in found and found.startswith("lr * ld * (sign(b1*mu + (1-b1)*g)|sign(")
    assert to_formula(parse("g two identity identity pow")) == "lr * (sign(g)|g|^2)"


EQUAL = [
    ["g one identity identity keep", "g one identity identity mul", "one g identity identity mul",
     "g m identity identity keep", "v m3 identity identity add ; g one identity identity keep"],
    ["g m identity identity add", "m g identity identity add"],
    ["g g identity identity add", "g two identity identity mul"],
    ["sign_m one identity identity keep", "m one sign identity keep", "m one sign sign keep"],
    ["sign_g sign_m identity identity mul ; u1 g exp identity mul",
     "sign_m sign_g identity identity mul ; g u1 identity exp mul"],
]  # fmt: skip


@pytest.mark.parametrize("texts", EQUAL, ids=[t[0] for t in EQUAL])
def test_rules_written_differently_that_compute_the_same_update_share_a_hash(texts: list[str]) -> None:
    assert len({functional_hash(parse(t)) for t in texts}) == 1
    if texts[0] != "g g identity identity add":  # g + g = 2 g is seen by the probe only, not by the rewrites
        assert len({structural_key(parse(t)) for t in texts}) == 1


def test_rules_that_differ_get_different_hashes() -> None:
    different = [
        *PRESETS.values(),
        "g one clip1e-5 identity keep",
        "g one clip1e-4 identity keep",
        "g one identity identity keep ; decay=linear",
        "g one identity identity keep ; decay=cyclic",
        "g one identity identity keep ; decay=restart",
        "m one identity identity keep ; beta1=0.95",
        "m one identity identity keep ; wd=decoupled",
        "g m identity identity sub",
        "m g identity identity sub",
    ]
    hashes = {t: functional_hash(parse(t)) for t in different}
    clashes = [(a, b) for a, b in itertools.combinations(different, 2) if hashes[a] == hashes[b]]
    assert not clashes
    assert functional_hash(parse(PRESETS["lion"])) == functional_hash(parse(PRESETS["lion"]))  # repeatable


def test_runs_commands_show_a_rule_simplified_as_optimizers_top_does() -> None:
    """`runs top` and `runs best` printed `lr * cd * (rd * sqrt|1|)` where `optimizers top` printed `lr * cd * rd`."""
    import random

    from l2l.search_spaces import load_space
    from l2l.search_spaces.api import token_sizes

    space = load_space("optimizer", {})
    rng = random.Random(0)
    shown = 0
    for _ in range(400):
        spec = space.decode(tuple(rng.randrange(k) for k in token_sizes(space.decisions())))
        raw = to_formula(space.rule_of(spec))  # type: ignore[attr-defined]
        if "sqrt|1|" in raw or "sign(sign(" in raw:
            described = space.describe(spec)
            assert "sqrt|1|" not in described and "sign(sign(" not in described, (raw, described)
            shown += 1
    assert shown  # the draw met such rules
