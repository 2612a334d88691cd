"""Every token of the update-rule language, once: base operands (`l2l.optsearch.operands`) and functions.

One entry per unary function (arity 1) and binary function (arity 2) says how it is printed (readable and
LaTeX, for `language`), how the compiled optimizer applies it to floats and tensor lists (`functional`),
and the PyTorch expression the exporter writes (`export`). The parser, printer, compiler, exporter and
plots read tokens from here alone; adding a token is adding one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from l2l.optsearch.operands import DIV_EPS, OPERANDS, STATISTICS, Operand, Statistic, Step, Tensors, Value

__all__ = [
    "BINARY_FUNCTIONS",
    "DIV_EPS",
    "DROPS_SECOND",
    "OPERANDS",
    "RANDOM_TOKENS",
    "STATISTICS",
    "UNARY_FUNCTIONS",
    "Binary",
    "Operand",
    "Statistic",
    "Step",
    "Tensors",
    "Unary",
    "Value",
    "wrap",
]


@dataclass(frozen=True)
class Unary:
    """A unary function: ``apply(x, like)`` (``like``: one tensor per parameter, to expand a float)."""

    arity: ClassVar[int] = 1
    text: Callable[[str], str]
    latex: Callable[[str], str]
    apply: Callable[[Value, Tensors], Value]
    code: Callable[[str], str]


@dataclass(frozen=True)
class Binary:
    """A binary function: ``apply(a, b)`` on floats or tensor lists."""

    arity: ClassVar[int] = 2
    text: Callable[[str, str], str]
    latex: Callable[[str, str], str]
    apply: Callable[[Value, Value], Value]
    code: Callable[[str, str], str]


# --- printing helpers ------------------------------------------------------------------------


def _is_atom(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch in " +-*/^" and s != ch:
            return False
    return True


def signed(s: str, latex: bool) -> str:
    """The sign of ``s`` as printed: ``s`` itself where it is already a sign (no ``sign(sign(x))``)."""
    if _is_atom(s) and s.startswith(r"\operatorname{sign}" if latex else "sign("):
        return s
    return rf"\operatorname{{sign}}\left({s}\right)" if latex else f"sign({s})"


def wrap(s: str, latex: bool) -> str:
    """``s`` in parentheses unless it is an atom, so printed formulas keep their precedence."""
    if _is_atom(s) and not s.startswith("-"):
        return s
    return rf"\left({s}\right)" if latex else f"({s})"


# --- functions -------------------------------------------------------------------------------


def _scalar(fn: Callable[[torch.Tensor], torch.Tensor], x: float) -> float:
    # float64 tensor math: log(0) is -inf and exp(1000) is inf instead of Python exceptions
    return float(fn(torch.tensor(x, dtype=torch.float64)))


def _as_list(x: Value, like: Tensors) -> Tensors:
    return [torch.full_like(t, x) for t in like] if isinstance(x, float) else x


def _elementwise(
    on_list: Callable[..., Sequence[torch.Tensor]], on_scalar: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[Value, Tensors], Value]:
    return lambda x, like: _scalar(on_scalar, x) if isinstance(x, float) else list(on_list(x))


def _abs_then(in_place: Callable[..., object]) -> Callable[[Tensors], Tensors]:
    def apply(x: Tensors) -> Tensors:
        out = torch._foreach_abs(x)
        in_place(out)
        return list(out)

    return apply


def _clip(c: str) -> Unary:
    bound = float(c)

    def apply(x: Value, like: Tensors) -> Value:
        if isinstance(x, float):
            return min(max(x, -bound), bound)
        return list(torch._foreach_clamp_max(torch._foreach_clamp_min(x, -bound), bound))

    return Unary(
        text=lambda x: f"clip({x}, {c})",
        latex=lambda x: rf"\operatorname{{clip}}\left({x}, 10^{{{c.split('e')[1]}}}\right)",
        apply=apply,
        code=lambda x: f"torch.clamp({x}, -{c}, {c})",
    )


def _drop(p: str) -> Unary:  # dropout with rate p, rescaled to keep the expected value
    rate = float(p)
    return Unary(
        text=lambda x: f"drop({x}, {p})",
        latex=lambda x: rf"\operatorname{{drop}}_{{{p}}}\left({x}\right)",
        apply=lambda x, like: [t * (torch.rand_like(t) >= rate).to(t.dtype) / (1.0 - rate) for t in _as_list(x, like)],
        code=lambda x: f"({x}) * (torch.rand_like(p) >= {p}).to(p.dtype) / (1 - {p})",
    )


UNARY_FUNCTIONS: dict[str, Unary] = {
    "identity": Unary(lambda x: x, lambda x: x, lambda x, like: x, lambda x: x),
    "neg": Unary(
        lambda x: f"-{wrap(x, False)}",
        lambda x: f"-{wrap(x, True)}",
        _elementwise(torch._foreach_neg, torch.neg),
        lambda x: f"-({x})",
    ),
    "exp": Unary(
        lambda x: f"exp({x})",
        lambda x: rf"e^{{{x}}}",
        _elementwise(torch._foreach_exp, torch.exp),
        lambda x: f"torch.exp({x})",
    ),
    "log": Unary(
        lambda x: f"log|{x}|",
        lambda x: rf"\log\left|{x}\right|",
        _elementwise(_abs_then(torch._foreach_log_), lambda t: torch.log(torch.abs(t))),
        lambda x: f"torch.log(torch.abs({x}))",
    ),
    "sqrt": Unary(
        lambda x: f"sqrt|{x}|",
        lambda x: rf"\sqrt{{\left|{x}\right|}}",
        _elementwise(_abs_then(torch._foreach_sqrt_), lambda t: torch.sqrt(torch.abs(t))),
        lambda x: f"torch.sqrt(torch.abs({x}))",
    ),
    "clip1e-5": _clip("1e-5"),
    "clip1e-4": _clip("1e-4"),
    "clip1e-3": _clip("1e-3"),
    "drop0.1": _drop("0.1"),
    "drop0.3": _drop("0.3"),
    "drop0.5": _drop("0.5"),
    "sign": Unary(
        lambda x: f"sign({x})",
        lambda x: rf"\operatorname{{sign}}\left({x}\right)",
        _elementwise(torch._foreach_sign, torch.sign),
        lambda x: f"torch.sign({x})",
    ),
}


def _binary(
    on_scalars: Callable[[float, float], float], on_lists: Callable[[Value, Value], Value]
) -> Callable[[Value, Value], Value]:
    def apply(a: Value, b: Value) -> Value:
        if isinstance(a, float) and isinstance(b, float):
            return on_scalars(a, b)
        return on_lists(a, b)

    return apply


def _commutative(op: Callable[..., Sequence[torch.Tensor]]) -> Callable[[Value, Value], Value]:
    def apply(a: Value, b: Value) -> Value:
        lst, other = (b, a) if isinstance(a, float) else (a, b)
        return list(op(lst, other))

    return apply


def _sub(a: Value, b: Value) -> Value:
    if isinstance(a, float):
        out = torch._foreach_neg(b)  # type: ignore[arg-type]
        torch._foreach_add_(out, a)
        return list(out)
    return list(torch._foreach_sub(a, b))


def _div(a: Value, b: Value) -> Value:
    if isinstance(b, float):
        return list(torch._foreach_mul(a, 1.0 / (b + DIV_EPS)))  # type: ignore[arg-type]
    denom = torch._foreach_add(b, DIV_EPS)
    if isinstance(a, float):
        torch._foreach_reciprocal_(denom)
        torch._foreach_mul_(denom, a)
        return list(denom)
    return list(torch._foreach_div(a, denom))


def _pow(a: Value, b: Value) -> Value:  # sign(a) |a|^b
    if isinstance(a, float):
        out = torch._foreach_pow(abs(a), b)  # type: ignore[arg-type]
        torch._foreach_mul_(out, math.copysign(1.0, a) if a != 0 else 0.0)
        return list(out)
    out = torch._foreach_pow(torch._foreach_abs(a), b)
    torch._foreach_mul_(out, torch._foreach_sign(a))
    return list(out)


BINARY_FUNCTIONS: dict[str, Binary] = {
    "add": Binary(
        lambda a, b: f"{a} + {b}",
        lambda a, b: f"{a} + {b}",
        _binary(lambda a, b: a + b, _commutative(torch._foreach_add)),
        lambda a, b: f"{a} + {b}",
    ),
    "sub": Binary(
        lambda a, b: f"{a} - {wrap(b, False)}",
        lambda a, b: f"{a} - {wrap(b, True)}",
        _binary(lambda a, b: a - b, _sub),
        lambda a, b: f"{a} - {b}",
    ),
    "mul": Binary(
        lambda a, b: f"{wrap(a, False)} * {wrap(b, False)}",
        lambda a, b: rf"{wrap(a, True)} \cdot {wrap(b, True)}",
        _binary(lambda a, b: a * b, _commutative(torch._foreach_mul)),
        lambda a, b: f"{a} * {b}",
    ),
    "div": Binary(
        lambda a, b: f"{wrap(a, False)} / ({b} + 1e-8)",
        lambda a, b: rf"\frac{{{a}}}{{{b} + 10^{{-8}}}}",
        _binary(lambda a, b: _scalar(lambda t: a / (t + DIV_EPS), b), _div),
        lambda a, b: f"{a} / ({b} + 1e-8)",
    ),
    "pow": Binary(
        lambda a, b: f"{signed(a, False)}|{a}|^{wrap(b, False)}",
        lambda a, b: rf"{signed(a, True)}\left|{a}\right|^{{{b}}}",
        _binary(lambda a, b: _scalar(lambda t: torch.sign(t) * torch.abs(t) ** b, a), _pow),
        lambda a, b: f"torch.sign({a}) * torch.abs({a}) ** {b}",
    ),
    "keep": Binary(lambda a, b: a, lambda a, b: a, lambda a, b: a, lambda a, b: a),
}
DROPS_SECOND = frozenset({"keep"})  # binary functions whose value ignores their second argument
RANDOM_TOKENS = frozenset({"noise", "drop0.1", "drop0.3", "drop0.5"})  # tokens that draw random numbers
