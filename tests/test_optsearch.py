"""The update-rule language, its compiler to torch.optim, the child task and the exported optimizer file."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.optsearch.compiler import RuleOptimizer, direct_operand, state_keys
from l2l.optsearch.export import export_source
from l2l.optsearch.language import BINARY, DECAYS, OPERANDS, UNARY, Rule, RuleError, Unit, parse, to_formula, to_latex
from l2l.optsearch.presets import PRESETS, preset
from l2l.optsearch.task import CHILD_TASK, RuleDiverged, rule_factory, sweep
from l2l.search_spaces import Context, load_space

# --- language -------------------------------------------------------------------------------


def test_parser_names_the_bad_token_its_position_and_what_is_known() -> None:
    with pytest.raises(RuleError) as err:
        parse("g m sqrtt identity add")
    assert str(err.value).startswith("unknown unary 'sqrtt' at position 3; known: identity, neg, exp, log, sqrt,")
    with pytest.raises(RuleError, match=r"unknown binary 'plus' at position 10; known: add, sub"):
        parse("g m identity identity add ; u1 g identity identity plus")
    with pytest.raises(
        RuleError, match=r"unknown operand 'u2' at position 6 \(unit 2 can only use the output of unit 1\)"
    ):
        parse("g m identity identity add ; u2 g identity identity add")
    with pytest.raises(RuleError, match=r"unknown operand 'gg' at position 1"):
        parse("gg m identity identity add")
    with pytest.raises(RuleError, match=r"unit 1 \(from position 1\) has 4 tokens"):
        parse("g m identity add")
    with pytest.raises(RuleError, match=r"unknown decay 'cosine'; known: linear, cyclic, restart"):
        parse("g m identity identity add ; decay=cosine")
    with pytest.raises(RuleError, match="empty rule"):
        parse("  ")
    with pytest.raises(RuleError, match=r"unknown setting 'b1'; known: decay, wd, beta1, beta2"):
        parse("g m identity identity add ; b1=0.9")
    with pytest.raises(RuleError, match=r"beta2=1.0 is out of range"):
        parse("g m identity identity add ; beta2=1")
    with pytest.raises(RuleError, match=r"unknown weight decay 'coupled'; known: decoupled"):
        parse("g m identity identity add ; wd=coupled")


def test_formulas_of_the_papers_rules() -> None:
    assert to_formula(preset("powersign")) == "lr * (exp(sign(g) * sign(m)) * g)"
    assert to_formula(preset("addsign")) == "lr * ((1 + sign(g) * sign(m)) * g)"
    assert to_formula(preset("signum")) == "lr * sign(m)"
    assert to_formula(preset("lion")) == "lr * (sign(b1*mu + (1-b1)*g) + wd*w)  [b2=0.99]"
    assert to_formula(preset("adamw")) == "lr * (adam + wd*w)"
    assert to_latex(preset("lion")).endswith(r"+ \lambda w\right), \quad \beta_2 = 0.99")
    assert to_formula(parse("g m identity identity add ; decay=restart")) == "lr * rd * (g + m)"
    assert to_latex(preset("powersign")).startswith(r"\eta \cdot")
    assert r"e^{\operatorname{sign}(g) \cdot \operatorname{sign}(\hat{m})}" in to_latex(preset("powersign"))


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    n = draw(st.integers(1, 3))
    units = []
    for i in range(n):
        operands = list(OPERANDS) + [f"u{k}" for k in range(1, i + 1)]
        units.append(
            Unit(
                draw(st.sampled_from(operands)),
                draw(st.sampled_from(operands)),
                draw(st.sampled_from(UNARY)),
                draw(st.sampled_from(UNARY)),
                draw(st.sampled_from(BINARY)),
            )
        )
    betas = [None, 0.0, 0.9, 0.95, 0.99, 0.999]
    return Rule(
        tuple(units),
        draw(st.sampled_from([None, *DECAYS])),
        draw(st.booleans()),
        draw(st.sampled_from(betas)),
        draw(st.sampled_from(betas)),
    )


@given(rules())
@settings(max_examples=300, deadline=None)
def test_parse_of_print_is_the_rule(rule: Rule) -> None:
    assert parse(str(rule)) == rule
    assert to_formula(rule).startswith("lr * ") and to_latex(rule).startswith(r"\eta")


# --- compiler against torch.optim -----------------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 100) -> list[float]:
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 20, generator=gen)
        y = torch.randint(0, 5, (32,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _max_rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest difference per tensor relative to that tensor's largest entry."""
    with torch.no_grad():
        return max(
            float((pa - pb).abs().max() / pa.abs().max()) for pa, pb in zip(a.parameters(), b.parameters(), strict=True)
        )


REFERENCES: list[tuple[str, Callable[..., torch.optim.Optimizer], dict[str, float]]] = [
    ("sgd", torch.optim.SGD, {"lr": 0.05}),
    ("adam", torch.optim.Adam, {"lr": 3e-3}),
    ("rmsprop", torch.optim.RMSprop, {"lr": 1e-3}),
    ("sgdm", lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw), {"lr": 0.01}),
]


@pytest.mark.parametrize(("name", "cls", "hyper"), REFERENCES, ids=[r[0] for r in REFERENCES])
@pytest.mark.parametrize("foreach", [False, True])
def test_dsl_matches_torch_optim_step_for_step(
    name: str, cls: Callable[..., torch.optim.Optimizer], hyper: dict[str, float], foreach: bool
) -> None:
    ref, dsl = _model(), _model()
    ref_losses = _train(ref, cls(ref.parameters(), foreach=foreach, **hyper))
    dsl_losses = _train(dsl, RuleOptimizer(dsl.parameters(), preset(name), lr=hyper["lr"]))
    assert _max_rel_diff(ref, dsl) < 1e-5
    assert max(abs(a - b) for a, b in zip(ref_losses, dsl_losses, strict=True)) < 1e-5
    assert dsl_losses[-1] < dsl_losses[0]


@pytest.mark.parametrize(
    ("text", "cls"),
    [("adam one identity identity mul", torch.optim.Adam), ("one rmsprop identity identity mul", torch.optim.RMSprop)],
)
def test_general_path_matches_torch_optim_too(text: str, cls: Callable[..., torch.optim.Optimizer]) -> None:
    # "x * 1" is not applied in place like a bare operand: this runs the general expression evaluator
    assert direct_operand(parse(text)) is None
    ref, dsl = _model(), _model()
    _train(ref, cls(ref.parameters(), lr=1e-3))
    _train(dsl, RuleOptimizer(dsl.parameters(), text, lr=1e-3))
    assert _max_rel_diff(ref, dsl) < 1e-5


class LionReference(torch.optim.Optimizer):
    """Lion as published (Chen et al. 2023, Program 1): the reference the DSL preset must match."""

    def __init__(self, params, lr: float, betas=(0.9, 0.99), weight_decay: float = 0.0):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg, grad = state["exp_avg"], p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_and_lion_presets_match_their_references(weight_decay: float) -> None:
    ref, dsl = _model(), _model()
    _train(ref, torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=weight_decay))
    _train(dsl, RuleOptimizer(dsl.parameters(), preset("adamw"), lr=3e-3, weight_decay=weight_decay))
    assert _max_rel_diff(ref, dsl) < 1e-5
    ref, dsl = _model(), _model()
    ref_losses = _train(ref, LionReference(ref.parameters(), lr=3e-4, weight_decay=weight_decay))
    dsl_losses = _train(dsl, RuleOptimizer(dsl.parameters(), preset("lion"), lr=3e-4, weight_decay=weight_decay))
    assert _max_rel_diff(ref, dsl) < 1e-5
    assert dsl_losses == pytest.approx(ref_losses, rel=1e-5) and dsl_losses[-1] < dsl_losses[0]
    # AdamW's default weight decay is torch's; a rule without wd=decoupled refuses one
    assert RuleOptimizer(dsl.parameters(), preset("adamw")).param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="only for rules with wd=decoupled"):
        RuleOptimizer(dsl.parameters(), preset("adam"), weight_decay=0.1)


def test_rule_betas_are_the_optimizers_defaults() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    assert RuleOptimizer([w], preset("lion")).param_groups[0]["betas"] == (0.9, 0.99, 0.999)
    assert RuleOptimizer([w], "m one identity identity keep ; beta1=0.95").param_groups[0]["betas"][0] == 0.95
    assert RuleOptimizer([w], preset("lion"), betas=(0.8, 0.9, 0.9)).param_groups[0]["betas"] == (0.8, 0.9, 0.9)


def test_only_the_state_the_rule_reads_is_kept() -> None:
    assert state_keys(preset("sgd")) == ()
    assert state_keys(preset("rmsprop")) == ("square_avg",)
    assert state_keys(preset("powersign")) == ("exp_avg", "step")
    assert state_keys(preset("adam")) == ("exp_avg", "exp_avg_sq", "step")
    # a dead unit (not used by the last one) keeps no state
    assert state_keys(parse("v m3 identity identity add ; g one identity identity keep")) == ()
    model = _model()
    opt = RuleOptimizer(model.parameters(), preset("powersign"), lr=0.01)
    _train(model, opt, steps=2)
    assert all(set(s) == {"exp_avg", "step"} for s in opt.state.values())


def test_nested_rule_update_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = RuleOptimizer([w], preset("powersign"), lr=0.1)
    g1, g2 = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([-0.5, -1.0, 1.0])
    w.grad = g1.clone()
    opt.step()  # m = g1 after bias correction: sign(g)sign(m) = 1 everywhere
    expected = torch.tensor([1.0, -2.0, 3.0]) - 0.1 * math.e * g1
    assert torch.allclose(w.detach(), expected)
    w.grad = g2.clone()
    opt.step()
    m = (0.9 * 0.1 * g1 + 0.1 * g2) / (1 - 0.9**2)
    expected = expected - 0.1 * torch.exp(torch.sign(g2) * torch.sign(m)) * g2
    assert torch.allclose(w.detach(), expected)


Expected = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("one two identity identity add", lambda g, w: torch.full_like(g, 3.0)),
        ("two g identity identity div", lambda g, w: 2.0 / (g + 1e-8)),
        ("two g identity identity pow", lambda g, w: 2.0**g),
        ("g two neg identity pow", lambda g, w: torch.sign(-g) * (-g).abs() ** 2),
        ("g one clip1e-3 identity sub", lambda g, w: g.clamp(-1e-3, 1e-3) - 1),
        ("g 1e-2w log sqrt mul", lambda g, w: torch.log(g.abs()) * torch.sqrt((1e-2 * w).abs())),
        ("one g neg sign keep", lambda g, w: torch.full_like(g, -1.0)),
    ],
)
def test_scalar_and_tensor_operands_mix(
    text: str, expected: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5])
    g = torch.tensor([0.3, -0.7, 1.5])
    w = torch.nn.Parameter(w0.clone())
    w.grad = g.clone()
    RuleOptimizer([w], text, lr=0.1).step()
    assert torch.allclose(w.detach(), w0 - 0.1 * expected(g, w0), rtol=1e-5, atol=1e-6)


def test_param_groups_state_dict_and_lr_schedulers_work() -> None:
    a, b = _model(), _model()
    groups = lambda m: [  # noqa: E731
        {"params": m[0].parameters(), "lr": 1e-3},
        {"params": m[2].parameters(), "lr": 1e-2},
    ]
    opt_a = RuleOptimizer(groups(a), preset("adam"))
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
    opt_b = torch.optim.Adam(groups(b))
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.5)
    for _ in range(3):
        _train(a, opt_a, steps=10)
        sched_a.step()
        _train(b, opt_b, steps=10)
        sched_b.step()
    assert _max_rel_diff(a, b) < 1e-5
    assert opt_a.param_groups[0]["lr"] == pytest.approx(1.25e-4)
    # save, reload into a fresh optimizer, and continue exactly as the original
    saved = copy.deepcopy(opt_a.state_dict())
    c = copy.deepcopy(a)
    opt_c = RuleOptimizer(groups(c), preset("adam"))
    opt_c.load_state_dict(saved)
    _train(a, opt_a, steps=5)
    _train(c, opt_c, steps=5)
    assert _max_rel_diff(a, c) == 0.0


def test_decays_need_a_horizon_and_follow_the_schedules() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(RuleError, match=r"decay schedule\(s\) \['ld'\], which need total_steps"):
        RuleOptimizer([w], "g one identity identity keep ; decay=linear")
    opt = RuleOptimizer([w], "one ld identity identity mul", lr=1.0, total_steps=4)
    moves = []
    for _ in range(4):
        before = float(w.detach())
        w.grad = torch.zeros(1)
        opt.step()
        moves.append(before - float(w.detach()))
    assert moves == pytest.approx([1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="invalid betas"):
        RuleOptimizer([w], preset("adam"), betas=(0.9, 1.0, 0.9))


def test_a_schedule_only_keep_ignores_needs_no_horizon_and_no_state(tmp_path: Path) -> None:
    """`keep` ignores its second argument: a schedule read only there made the optimizer, and the class
    `l2l optimizers export` wrote, demand total_steps for a step that never reads it. A random second argument
    still draws (later draws follow it), so there the schedule is still read."""
    dead = "1e-1w ld drop0.5 drop0.1 pow ; m rd drop0.1 clip1e-5 keep"  # found by a search: lr * drop(m, 0.1)
    assert parse(dead).operands() == {"m"}
    a, b = _model(), _model()
    torch.manual_seed(3)
    _train(a, RuleOptimizer(a.parameters(), dead, lr=0.01), steps=5)
    torch.manual_seed(3)
    _train(b, RuleOptimizer(b.parameters(), "m one drop0.1 identity keep", lr=0.01), steps=5)
    assert _max_rel_diff(a, b) == 0.0  # the same update, with the state of m only
    # the exported class too: no horizon asked, the same steps; and a random argument keep drops still draws (one
    # weight tensor: the class draws parameter by parameter, RuleOptimizer unit by unit over all of them)
    random_keep = "m g identity drop0.1 keep ; u1 g drop0.5 identity keep"  # the second drop follows the first
    for i, text in enumerate((dead, random_keep)):
        path = tmp_path / f"keep_opt{i}.py"
        path.write_text(export_source(parse(text), "Kept", lr=0.01))
        torch.manual_seed(0)
        a = torch.nn.Linear(20, 5, bias=False)
        b = torch.nn.Linear(20, 5, bias=False)
        b.load_state_dict(a.state_dict())
        torch.manual_seed(5)
        _train(a, RuleOptimizer(a.parameters(), text, lr=0.01), steps=5)
        torch.manual_seed(5)
        _train(b, _load(path).Kept(b.parameters(), lr=0.01), steps=5)
        assert _max_rel_diff(a, b) < 1e-6, text
    with pytest.raises(RuleError, match=r"decay schedule\(s\) \['rd'\]"):
        RuleOptimizer(_model().parameters(), "m rd identity drop0.1 keep")  # the draw reads rd


# --- export ---------------------------------------------------------------------------------

_L2L_PACKAGES = {"optsearch", "runs", "controllers", "search_spaces", "nas", "benchmarks"}


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "text",
    [
        *PRESETS.values(),
        "m3 v sqrt log div ; u1 1e-2w clip1e-3 identity pow ; u2 cd neg exp sub ; decay=restart",
        "adam g identity sign add ; decay=cyclic",
    ],
)
def test_exported_file_is_the_same_optimizer(tmp_path: Path, text: str) -> None:
    rule = parse(text)
    path = tmp_path / "found_opt.py"
    path.write_text(export_source(rule, "Found", lr=0.01))
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert {name.split(".")[0] for name in imported} <= {"math", "torch"}
    a, b = _model(), _model()
    _train(a, RuleOptimizer(a.parameters(), rule, lr=0.01, total_steps=40), steps=40)
    _train(b, _load(path).Found(b.parameters(), lr=0.01, total_steps=40), steps=40)
    assert _max_rel_diff(a, b) < 1e-6
    if rule.decay is not None:  # a schedule without its horizon is refused when the optimizer is made
        with pytest.raises(ValueError, match="pass total_steps=<number of steps>"):
            _load(path).Found(_model().parameters(), lr=0.01)


def test_exported_file_imports_without_l2l(tmp_path: Path) -> None:
    (tmp_path / "found_opt.py").write_text(export_source(preset("addsign"), "AddSign"))
    code = (
        "import sys, torch; from found_opt import AddSign\n"
        "w = torch.nn.Parameter(torch.ones(3)); w.grad = torch.ones(3); AddSign([w], lr=0.1).step()\n"
        f"assert not any(m.split('.')[0] in {sorted(_L2L_PACKAGES)!r} for m in sys.modules)\n"
        "print(w.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [round(x, 6) for x in eval(out.stdout)] == [0.8] * 3  # (1 + 1) * g * lr


# --- child task and space -------------------------------------------------------------------

FAST_TASK = dataclasses.replace(CHILD_TASK, epochs=1)


def test_rule_that_diverges_fails_at_once_with_the_reason() -> None:
    blowup = parse("one g identity identity div")  # 1 / (g + 1e-8): enormous steps
    calls = []
    factory = rule_factory(blowup, FAST_TASK)

    def counting(params, lr):  # type: ignore[no-untyped-def]
        calls.append(lr)
        return factory(params, lr)

    with pytest.raises(RuleDiverged, match=r"smallest learning rate 0.0001: loss (became nan|became inf|blew up)"):
        sweep(counting, FAST_TASK)
    assert calls == [1e-4]  # the other learning rates were not tried


def test_divergence_at_a_large_rate_stops_the_sweep_and_keeps_the_best() -> None:
    out = sweep(rule_factory(preset("sgd"), FAST_TASK), FAST_TASK, lrs=(0.1, 1e4, 1e5))
    assert list(out.runs) == [0.1] and list(out.diverged) == [1e4]
    assert out.best_lr == 0.1 and out.best.val_acc > 0.5


def test_optimizer_space_evaluates_rules_and_records_failures() -> None:
    space = load_space("optimizer", {"epochs": 1, "lrs": "0.001,0.01"})
    adam = space.decode(space.encode(_spec_of(space, preset("adam"))))
    result = space.evaluate(adam, Context())
    assert result.ok and result.reward > 0.5 and result.info["formula"] == "lr * adam"
    assert set(result.info["val_acc_by_lr"]) == {"0.001", "0.01"}
    bad = space.evaluate(_spec_of(space, parse("one g identity identity div")), Context())
    assert bad.status == "failed" and "diverged at the smallest learning rate" in (bad.error or "")
    assert bad.info["rule"] == "one g identity identity div"
    again = space.evaluate(adam, Context())
    assert again.reward == result.reward and again.curves == result.curves  # drop/noise draws are seeded too


def _spec_of(space, rule: Rule):  # type: ignore[no-untyped-def]
    from l2l.search_spaces import Spec

    u = rule.units[0]
    values = [("u1_op1", u.op1), ("u1_op2", u.op2), ("u1_unary1", u.u1), ("u1_unary2", u.u2), ("u1_binary", u.b)]
    return Spec("optimizer", (*values, ("decay", rule.decay or "none")))


def test_a_rule_is_drawn_as_its_dataflow() -> None:
    """`l2l plot arch` drew an optimizer run's tokens as a chain (input, u1_op1=buf, u1_op2=g2, ...)."""
    from l2l.search_spaces import Spec, load_space

    space = load_space("optimizer", {"units": 2})
    names = [f"u{k}_{part}" for k in (1, 2) for part in ("op1", "op2", "unary1", "unary2", "binary")]
    values = ("g", "m", "sign", "identity", "mul", "u1", "g", "identity", "identity", "add")
    spec = Spec("optimizer", (*zip(names, values, strict=True), ("decay", "linear")))
    assert space.describe(spec) == "lr * ld * (g + m * sign(g))"  # simplified: what it computes, in order
    graph = space.graph(spec)
    assert graph["nodes"] == ["m", "sign(g)", "u1: mul", "g", "u2: add", "update = lr * ld * u2"]
    assert graph["edges"] == [[0, 2, ""], [1, 2, ""], [3, 4, ""], [2, 4, ""], [4, 5, ""]]
    # a unary function on an edge
    values = ("g", "m", "sqrt", "identity", "mul", "u1", "u1", "identity", "identity", "keep")
    graph = space.graph(Spec("optimizer", (*zip(names, values, strict=True), ("decay", "none"))))
    assert graph["nodes"] == ["m", "g", "u1: mul", "update = lr * u1"] and [1, 2, "sqrt"] in graph["edges"]
    # a bare operand, written back as keep(x, one): drawn as the operand alone ("1" was drawn for the dead rd)
    values = ("1e-1w", "ld", "drop0.5", "drop0.1", "pow", "m", "rd", "drop0.1", "clip1e-5", "keep")
    graph = space.graph(Spec("optimizer", (*zip(names, values, strict=True), ("decay", "none"))))
    assert graph["nodes"] == ["m", "u1: keep", "update = lr * u1"] and graph["edges"] == [[0, 1, "drop0.1"], [1, 2, ""]]
