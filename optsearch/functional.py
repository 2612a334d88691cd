"""The math of a compiled rule over lists of tensors (multi-tensor ``torch._foreach_*`` operations).

A value is either a Python float (constants, decays and what is computed from them alone) or a
list holding one tensor per parameter. Every operation here is out of place, so an operand such as
the gradient list is never modified by the expression that reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from l2l.optsearch.language import DIV_EPS, OPERANDS, Rule

Tensors = list[torch.Tensor]
Value = float | Tensors


def _scalar(fn: Callable[[torch.Tensor], torch.Tensor], x: float) -> float:
    # float64 tensor math: log(0) is -inf and exp(1000) is inf instead of Python exceptions
    return float(fn(torch.tensor(x, dtype=torch.float64)))


def _as_list(x: Value, like: Tensors) -> Tensors:
    return [torch.full_like(t, x) for t in like] if isinstance(x, float) else x


def unary(name: str, x: Value, like: Tensors) -> Value:
    """Apply one unary function of the language."""
    if name == "identity":
        return x
    if name.startswith("drop"):  # dropout with rate p, rescaled to keep the expected value
        p = float(name[4:])
        return [t * (torch.rand_like(t) >= p).to(t.dtype) / (1.0 - p) for t in _as_list(x, like)]
    if name.startswith("clip"):
        c = float(name[4:])
        if isinstance(x, float):
            return min(max(x, -c), c)
        return list(torch._foreach_clamp_max(torch._foreach_clamp_min(x, -c), c))
    if isinstance(x, float):
        return _scalar(_SCALAR_UNARY[name], x)
    if name == "neg":
        return list(torch._foreach_neg(x))
    if name == "exp":
        return list(torch._foreach_exp(x))
    if name in ("log", "sqrt"):
        out = torch._foreach_abs(x)
        (torch._foreach_log_ if name == "log" else torch._foreach_sqrt_)(out)
        return list(out)
    if name == "sign":
        return list(torch._foreach_sign(x))
    raise KeyError(name)


_SCALAR_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": lambda t: torch.log(torch.abs(t)),
    "sqrt": lambda t: torch.sqrt(torch.abs(t)),
    "sign": torch.sign,
}


def _binary_scalar(name: str, a: float, b: float) -> float:
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div":
        return _scalar(lambda t: a / (t + DIV_EPS), b)
    return _scalar(lambda t: torch.sign(t) * torch.abs(t) ** b, a)


def binary(name: str, a: Value, b: Value) -> Value:
    """Apply one binary function of the language."""
    if name == "keep":
        return a
    if isinstance(a, float) and isinstance(b, float):
        return _binary_scalar(name, a, b)
    if name in ("add", "mul"):
        lst, other = (b, a) if isinstance(a, float) else (a, b)
        assert not isinstance(lst, float)
        op = torch._foreach_add if name == "add" else torch._foreach_mul
        return list(op(lst, other))
    if name == "sub":
        if isinstance(a, float):
            assert not isinstance(b, float)
            out = torch._foreach_neg(b)
            torch._foreach_add_(out, a)
            return list(out)
        return list(torch._foreach_sub(a, b))
    if name == "div":
        if isinstance(b, float):
            assert not isinstance(a, float)
            return list(torch._foreach_mul(a, 1.0 / (b + DIV_EPS)))
        denom = torch._foreach_add(b, DIV_EPS)
        if isinstance(a, float):
            torch._foreach_reciprocal_(denom)
            torch._foreach_mul_(denom, a)
            return list(denom)
        return list(torch._foreach_div(a, denom))
    if name == "pow":  # sign(a) |a|^b
        if isinstance(a, float):
            assert not isinstance(b, float)
            out = torch._foreach_pow(abs(a), b)
            torch._foreach_mul_(out, math.copysign(1.0, a) if a != 0 else 0.0)
            return list(out)
        out = torch._foreach_pow(torch._foreach_abs(a), b)
        torch._foreach_mul_(out, torch._foreach_sign(a))
        return list(out)
    raise KeyError(name)


def evaluate(rule: Rule, operand: Callable[[str], Value], like: Tensors) -> Value:
    """The rule's update (the last unit's output) given a source of base operand values."""
    cache: dict[str, Value] = {}

    def get(name: str) -> Value:
        if name not in cache:
            cache[name] = operand(name)
        return cache[name]

    needed = live_units(rule)
    for k, unit in enumerate(rule.units, start=1):
        if k not in needed:
            continue
        x = unary(unit.u1, get(unit.op1), like)
        y = unary(unit.u2, get(unit.op2), like)
        cache[f"u{k}"] = binary(unit.b, x, y)
    return cache[f"u{len(rule.units)}"]


def live_units(rule: Rule) -> set[int]:
    """Numbers of the units the last unit depends on (itself included); the others are dead code."""
    live, todo = set(), [len(rule.units)]
    while todo:
        k = todo.pop()
        if k in live:
            continue
        live.add(k)
        todo.extend(int(op[1:]) for op in rule.units[k - 1].tokens[:2] if op not in OPERANDS)
    return live


def decay_value(name: str, t: float, total: float, cycles: int) -> float:
    """The schedules of Bello et al. at step ``t`` of ``total``: linear, cyclic cosine, restart cosine."""
    if name == "ld":
        return max(0.0, 1.0 - t / total)
    if name == "cd":
        return 0.5 * (1.0 + math.cos(2.0 * math.pi * cycles * t / total))
    period = total / cycles
    return 0.5 * (1.0 + math.cos(math.pi * (t % period) / period))


def bias_corrected(avgs: Tensors, beta: float, steps: Sequence[float]) -> Tensors:
    """Running means divided by 1 - beta^t (t per parameter), as Adam does."""
    return list(torch._foreach_div(avgs, [1.0 - beta**t for t in steps]))
