"""The update-rule language of Neural Optimizer Search (Bello et al., ICML 2017).

A rule is one or more units; each unit is five tokens ``op1 op2 u1 u2 b`` and computes
``b(u1(op1), u2(op2))``. A later unit may take an earlier unit's output as an operand (``u1`` is
the first unit's output, ``u2`` the second's, ...). The parameter update is
``w <- w - lr * decay(t) * out`` where ``out`` is the last unit's output and ``decay`` an optional
schedule on the learning rate.

Text form: units separated by ``;``, then optionally ``; decay=NAME``::

    sign_g sign_m identity identity mul ; u1 g exp identity mul        (PowerSign)

Positions in error messages count tokens from 1 across the whole rule (``;`` not counted), so
the third token of the first unit is position 3 and the first token of the second unit is 6.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> (readable, LaTeX); the order is the order of the search space's options
OPERANDS: dict[str, tuple[str, str]] = {
    "g": ("g", "g"),
    "g2": ("g^2", "g^2"),
    "g3": ("g^3", "g^3"),
    "m": ("m", r"\hat{m}"),
    "v": ("v", r"\hat{v}"),
    "m3": ("m3", r"\hat{\gamma}"),
    "sign_g": ("sign(g)", r"\operatorname{sign}(g)"),
    "sign_m": ("sign(m)", r"\operatorname{sign}(\hat{m})"),
    "one": ("1", "1"),
    "two": ("2", "2"),
    "noise": ("noise", r"\epsilon"),
    "1e-4w": ("1e-4*w", r"10^{-4} w"),
    "1e-3w": ("1e-3*w", r"10^{-3} w"),
    "1e-2w": ("1e-2*w", r"10^{-2} w"),
    "1e-1w": ("1e-1*w", r"10^{-1} w"),
    "adam": ("adam", r"\mathrm{Adam}"),
    "rmsprop": ("rmsprop", r"\mathrm{RMSProp}"),
    "ld": ("ld", r"d_{\mathrm{lin}}"),
    "cd": ("cd", r"d_{\mathrm{cyc}}"),
    "rd": ("rd", r"d_{\mathrm{rst}}"),
}
OPERAND_HELP = {
    "g": "the gradient",
    "m": "running mean of g (beta 0.9), bias-corrected",
    "v": "running mean of g^2 (beta 0.999), bias-corrected",
    "m3": "running mean of g^3 (beta 0.999), bias-corrected",
    "noise": "Gaussian noise, standard deviation 0.01",
    "adam": "Adam's update m / (sqrt(v) + 1e-8)",
    "rmsprop": "RMSProp's update g / (sqrt(r) + 1e-8), r the running mean of g^2 with alpha 0.99",
    "ld": "linear decay 1 - t/T",
    "cd": "cyclic cosine decay 0.5 (1 + cos(2 pi n t / T))",
    "rd": "restart cosine decay 0.5 (1 + cos(pi (t mod T/n) / (T/n)))",
}
UNARY: tuple[str, ...] = (
    "identity",
    "neg",
    "exp",
    "log",
    "sqrt",
    "clip1e-5",
    "clip1e-4",
    "clip1e-3",
    "drop0.1",
    "drop0.3",
    "drop0.5",
    "sign",
)
BINARY: tuple[str, ...] = ("add", "sub", "mul", "div", "pow", "keep")
DECAYS: dict[str, str] = {"linear": "ld", "cyclic": "cd", "restart": "rd"}  # learning-rate schedule -> operand
DIV_EPS = 1e-8
_KINDS = ("operand", "operand", "unary", "unary", "binary")


class RuleError(ValueError):
    """A rule's text or structure is malformed; the message names the token and its position."""


def unit_ref(k: int) -> str:
    """The operand name of the ``k``-th unit's output (1-based)."""
    return f"u{k}"


def _known_operands(index: int) -> list[str]:
    return list(OPERANDS) + [unit_ref(k) for k in range(1, index + 1)]


@dataclass(frozen=True)
class Unit:
    """``b(u1(op1), u2(op2))``: five token names."""

    op1: str
    op2: str
    u1: str
    u2: str
    b: str

    @property
    def tokens(self) -> tuple[str, str, str, str, str]:
        return (self.op1, self.op2, self.u1, self.u2, self.b)


@dataclass(frozen=True)
class Rule:
    """An update rule: units in order (the last one's output is the update) and a learning-rate decay."""

    units: tuple[Unit, ...]
    decay: str | None = None

    def __post_init__(self) -> None:
        if not self.units:
            raise RuleError("a rule needs at least one unit")
        if self.decay is not None and self.decay not in DECAYS:
            raise RuleError(f"unknown decay {self.decay!r}; known: {', '.join(DECAYS)}")
        for i, unit in enumerate(self.units):
            base = 5 * i
            for j, (name, kind) in enumerate(zip(unit.tokens, _KINDS, strict=True)):
                _check_token(name, kind, i, base + j + 1)

    def __str__(self) -> str:
        return to_text(self)

    def operands(self) -> set[str]:
        """The base operands the live part of the rule reads (what decides the state kept)."""
        used: set[str] = set()
        todo, done = [len(self.units)], set()
        while todo:
            k = todo.pop()
            if k in done:
                continue
            done.add(k)
            unit = self.units[k - 1]
            for op in (unit.op1, unit.op2):
                if op in OPERANDS:
                    used.add(op)
                else:
                    todo.append(int(op[1:]))
        if self.decay is not None:
            used.add(DECAYS[self.decay])
        return used


def _check_token(name: str, kind: str, unit_index: int, position: int) -> None:
    known = {"operand": _known_operands(unit_index), "unary": list(UNARY), "binary": list(BINARY)}[kind]
    if name not in known:
        hint = ""
        if kind == "operand" and name.startswith("u") and name[1:].isdigit():
            hint = f" (unit {unit_index + 1} can only use the outputs of units 1..{unit_index})"
        raise RuleError(f"unknown {kind} {name!r} at position {position}{hint}; known: {', '.join(known)}")


def parse(text: str) -> Rule:
    """Read a rule from its text form; errors say which token is wrong, where, and what is allowed."""
    if not text.strip():
        raise RuleError("empty rule text")
    segments = [s.strip() for s in text.split(";")]
    decay: str | None = None
    if segments and segments[-1].startswith("decay="):
        decay = segments.pop()[len("decay=") :].strip()
        if decay not in DECAYS:
            raise RuleError(f"unknown decay {decay!r}; known: {', '.join(DECAYS)}")
    units: list[Unit] = []
    for i, segment in enumerate(segments):
        tokens = segment.split()
        if len(tokens) != 5:
            raise RuleError(
                f"unit {i + 1} (from position {5 * i + 1}) has {len(tokens)} tokens {tokens}; "
                "expected 5: op1 op2 unary1 unary2 binary"
            )
        units.append(Unit(*tokens))
    return Rule(tuple(units), decay)  # checks every token, naming its position


def to_text(rule: Rule) -> str:
    """The text form; ``parse(to_text(r)) == r``."""
    parts = [" ".join(u.tokens) for u in rule.units]
    if rule.decay is not None:
        parts.append(f"decay={rule.decay}")
    return " ; ".join(parts)


# --- readable and LaTeX formulas -------------------------------------------------------------


def _is_atom(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch in " +-*/^" and s != ch:
            return False
    return True


def _wrap(s: str, latex: bool) -> str:
    if _is_atom(s) and not s.startswith("-"):
        return s
    return rf"\left({s}\right)" if latex else f"({s})"


def _unary(name: str, x: str, latex: bool) -> str:
    if name == "identity":
        return x
    if name == "neg":
        return f"-{_wrap(x, latex)}"
    if name.startswith("clip"):
        c = name[4:]
        return rf"\operatorname{{clip}}\left({x}, {c}\right)" if latex else f"clip({x}, {c})"
    if name.startswith("drop"):
        p = name[4:]
        return rf"\operatorname{{drop}}_{{{p}}}\left({x}\right)" if latex else f"drop({x}, {p})"
    if latex:
        return {
            "exp": rf"e^{{{x}}}",
            "log": rf"\log\left|{x}\right|",
            "sqrt": rf"\sqrt{{\left|{x}\right|}}",
            "sign": rf"\operatorname{{sign}}\left({x}\right)",
        }[name]
    return {"exp": f"exp({x})", "log": f"log|{x}|", "sqrt": f"sqrt|{x}|", "sign": f"sign({x})"}[name]


def _binary(name: str, a: str, b: str, latex: bool) -> str:
    if name == "keep":
        return a
    if name == "add":
        return f"{a} + {b}"
    if name == "sub":
        return f"{a} - {_wrap(b, latex)}"
    if name == "mul":
        return rf"{_wrap(a, latex)} \cdot {_wrap(b, latex)}" if latex else f"{_wrap(a, latex)} * {_wrap(b, latex)}"
    if name == "div":
        return rf"\frac{{{a}}}{{{b} + 10^{{-8}}}}" if latex else f"{_wrap(a, latex)} / ({b} + 1e-8)"
    # pow: sign(a) |a|^b
    if latex:
        return rf"\operatorname{{sign}}\left({a}\right)\left|{a}\right|^{{{b}}}"
    return f"sign({a})|{a}|^{_wrap(b, latex)}"


def _formula(rule: Rule, latex: bool) -> str:
    outputs: list[str] = []
    for unit in rule.units:
        vals = []
        for op in (unit.op1, unit.op2):
            vals.append(OPERANDS[op][1 if latex else 0] if op in OPERANDS else outputs[int(op[1:]) - 1])
        x = _unary(unit.u1, vals[0], latex)
        y = _unary(unit.u2, vals[1], latex)
        outputs.append(_binary(unit.b, x, y, latex))
    body = _wrap(outputs[-1], latex)
    if rule.decay is not None:
        d = OPERANDS[DECAYS[rule.decay]][1 if latex else 0]
        return rf"\eta \cdot {d} \cdot {body}" if latex else f"lr * {d} * {body}"
    return rf"\eta \cdot {body}" if latex else f"lr * {body}"


def to_formula(rule: Rule) -> str:
    """A readable formula of the update, e.g. ``lr * (exp(sign(g) * sign(m)) * g)``."""
    return _formula(rule, latex=False)


def to_latex(rule: Rule) -> str:
    """The update as LaTeX, for plot titles and papers."""
    return _formula(rule, latex=True)
