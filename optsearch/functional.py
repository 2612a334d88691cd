"""The math of a compiled rule over lists of tensors (multi-tensor ``torch._foreach_*`` operations).

A value is either a Python float (constants, decays and what is computed from them alone) or a
list holding one tensor per parameter. What each token computes is its entry in
`l2l.optsearch.vocabulary`; this module walks a rule's units through those entries. Every operation is
out of place, so an operand such as the gradient list is never modified by the expression that reads it.
"""

from __future__ import annotations

from collections.abc import Callable

from l2l.optsearch.language import Rule
from l2l.optsearch.vocabulary import BINARY_FUNCTIONS, OPERANDS, UNARY_FUNCTIONS, Tensors, Value

__all__ = ["Tensors", "Value", "binary", "decay_value", "evaluate", "live_units", "unary"]


def unary(name: str, x: Value, like: Tensors) -> Value:
    """Apply one unary function of the language (``like`` expands a float where the function needs tensors)."""
    return UNARY_FUNCTIONS[name].apply(x, like)


def binary(name: str, a: Value, b: Value) -> Value:
    """Apply one binary function of the language."""
    return BINARY_FUNCTIONS[name].apply(a, b)


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
        y = unary(unit.u2, get(unit.op2), like) if len(rule.reads(k)) == 2 else x  # keep's ignored second
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
        todo.extend(int(op[1:]) for op in rule.reads(k) if op not in OPERANDS)
    return live


def decay_value(name: str, t: float, total: float, cycles: int) -> float:
    """The schedules of Bello et al. at step ``t`` of ``total``: linear, cyclic cosine, restart cosine."""
    schedule = OPERANDS[name].schedule
    if schedule is None:
        raise KeyError(f"operand {name!r} is not a decay schedule")
    return schedule(t, total, cycles)
