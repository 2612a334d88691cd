"""Algebraic simplification of rules, and two hashes that make equal rules one: structural and functional.

A rule's live units form an expression tree. `simplify` rewrites it with identities that hold exactly in
floating point: ``identity(x) = x``, ``keep(x, y) = x`` (y deterministic), ``sign(sign(x)) = sign(x)``,
``neg(neg(x)) = x``, ``x * 1 = 1 * x = x``, ``sign(1) = sign(2) = 1``, ``sqrt|1| = 1``, ``sign(g) = sign_g``,
``sign(m) = sign_m``, ``sign(sign_g) = sign_g``, and
orders the arguments of ``add`` and ``mul`` (commutative in floating point too); units nobody reads
disappear. `simplified_rule` writes the tree back as units, for printing and for `structural_key`.

`functional_hash` (Lion's de-duplication) runs the rule's optimizer for a few steps on fixed random
parameters and gradients (magnitudes from 1e-7 to 10, so clips and signs are told apart) and hashes the
parameter moves rounded to six significant digits: rules written differently that compute the same
update get one hash; rules that differ on the probe get different ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from l2l.optsearch.language import Rule, Unit, to_text
from l2l.optsearch.vocabulary import BINARY_FUNCTIONS, OPERANDS, RANDOM_TOKENS

_COMMUTATIVE = frozenset({"add", "mul"})
_SIGNS = frozenset({"sign_g", "sign_m"})
_POSITIVE_CONSTANTS = frozenset({"one", "two"})
_SIGN_OF = {"g": "sign_g", "m": "sign_m"}


@dataclass(frozen=True)
class Expr:
    """A node: a base operand (no args), a unary function (one arg) or a binary function (two)."""

    op: str
    args: tuple[Expr, ...] = ()

    def __str__(self) -> str:
        return self.op if not self.args else f"{self.op}({', '.join(map(str, self.args))})"

    @property
    def random(self) -> bool:
        return self.op in RANDOM_TOKENS or any(a.random for a in self.args)


def tree(rule: Rule) -> Expr:
    """The expression the rule's last unit computes, earlier units inlined."""
    built: dict[str, Expr] = {}
    for k, unit in enumerate(rule.units, start=1):
        x, y = (Expr(op) if op in OPERANDS else built[op] for op in (unit.op1, unit.op2))
        built[f"u{k}"] = Expr(unit.b, (Expr(unit.u1, (x,)), Expr(unit.u2, (y,))))
    return built[f"u{len(rule.units)}"]


def simplify_expr(e: Expr) -> Expr:
    """Apply the exact identities bottom-up until nothing changes."""
    args = tuple(simplify_expr(a) for a in e.args)
    e = Expr(e.op, args)
    if e.op == "identity":
        return args[0]
    if e.op == "keep" and not args[1].random:
        return args[0]
    if e.op == "sign":
        (x,) = args
        if x.op == "sign" or x.op in _SIGNS:
            return x
        if x.op in _POSITIVE_CONSTANTS:
            return Expr("one")
        if x.op in _SIGN_OF:  # sign(m) = sign_m: bias correction divides by a positive number
            return Expr(_SIGN_OF[x.op])
    if e.op == "sqrt" and args[0].op == "one":  # sqrt|1| is 1 exactly
        return args[0]
    if e.op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if e.op == "mul" and not any(a.random for a in args):
        if args[1].op == "one":
            return args[0]
        if args[0].op == "one":
            return args[1]
    if e.op in _COMMUTATIVE and not any(a.random for a in args):
        return Expr(e.op, tuple(sorted(args, key=lambda a: (bool(a.args), str(a)))))
    return e


def _to_units(root: Expr) -> tuple[Unit, ...]:
    units: list[Unit] = []

    def ref(e: Expr) -> str:
        if not e.args:
            return e.op
        emit(e)
        return f"u{len(units)}"

    def side(e: Expr) -> tuple[str, str]:  # (operand, unary): a unary node folds into its unit's slot
        if e.op in BINARY_FUNCTIONS or not e.args:
            return ref(e), "identity"
        return ref(e.args[0]), e.op

    def emit(e: Expr) -> None:
        if e.op in BINARY_FUNCTIONS:
            (op1, u1), (op2, u2) = side(e.args[0]), side(e.args[1])
            units.append(Unit(op1, op2, u1, u2, e.op))
        else:  # a unary node or a bare operand on its own
            op1, u1 = side(e)
            units.append(Unit(op1, "one", u1, "identity", "keep"))

    emit(root)
    return tuple(units)


def simplified_rule(rule: Rule) -> Rule:
    """The rule with its expression simplified, written back as units (settings kept)."""
    return replace(rule, units=_to_units(simplify_expr(tree(rule))))


def structural_key(rule: Rule) -> str:
    """Equal for rules whose simplified expressions and settings are equal."""
    return to_text(simplified_rule(rule))


PROBE_STEPS = 3


def _probe_tensors(seed: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7,), (3, 4)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]

    def grad(shape: tuple[int, ...]) -> torch.Tensor:
        magnitude = 10 ** (torch.rand(shape, generator=gen, dtype=torch.float64) * 8 - 7)
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -magnitude, magnitude)

    grads = [[grad(s) for s in shapes] for _ in range(PROBE_STEPS)]
    return params, grads


def probe_moves(rule: Rule, seed: int = 0) -> list[torch.Tensor]:
    """The parameter moves of ``PROBE_STEPS`` steps (lr 1) of the rule's optimizer on the fixed probe."""
    from l2l.optsearch.compiler import RuleOptimizer

    params, grads = _probe_tensors(seed)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = RuleOptimizer(ps, rule, lr=1.0, total_steps=7, cycles=2)
    moves: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step_grads in grads:
            before = [p.detach().clone() for p in ps]
            for p, g in zip(ps, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
            moves += [p.detach() - b for p, b in zip(ps, before, strict=True)]
    return moves


def functional_hash(rule: Rule) -> str:
    """A short hash of the rule's update on the probe: equal updates, equal hashes."""
    digest = hashlib.sha256()
    for move in probe_moves(rule):
        values = (move.flatten() + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0
        digest.update(",".join(f"{v:.6g}" for v in values).encode())
        digest.update(b";")
    return digest.hexdigest()[:16]
