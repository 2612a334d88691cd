"""The update-rule language of Neural Optimizer Search (Bello et al., ICML 2017).

A rule is one or more units; each unit is five tokens ``op1 op2 u1 u2 b`` and computes
``b(u1(op1), u2(op2))``. A later unit may take an earlier unit's output as an operand (``u1`` is
the first unit's output, ``u2`` the second's, ...). The parameter update is
``w <- w - lr * decay(t) * out`` where ``out`` is the last unit's output and ``decay`` an optional
schedule on the learning rate.

Text form: units separated by ``;``, then optionally settings ``; decay=NAME``, ``; wd=decoupled`` (decoupled
weight decay, ``w <- w - lr * wd * w`` as AdamW and Lion apply it), ``; beta1=X`` and ``; beta2=X`` (the
betas of the running means this rule starts with)::

    sign_g sign_m identity identity mul ; u1 g exp identity mul        (PowerSign)
    ipol one sign identity keep ; wd=decoupled ; beta2=0.99             (Lion)

Positions in error messages count tokens from 1 across the whole rule (``;`` not counted), so
the third token of the first unit is position 3 and the first token of the second unit is 6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l2l.optsearch.vocabulary import BINARY_FUNCTIONS, DROPS_SECOND, OPERANDS, RANDOM_TOKENS, UNARY_FUNCTIONS, wrap

OPERAND_HELP = {name: op.help for name, op in OPERANDS.items() if op.help}
UNARY: tuple[str, ...] = tuple(UNARY_FUNCTIONS)
BINARY: tuple[str, ...] = tuple(BINARY_FUNCTIONS)
# learning-rate schedule -> operand
DECAYS: dict[str, str] = {op.decay: name for name, op in OPERANDS.items() if op.decay is not None}
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


WEIGHT_DECAYS = ("decoupled",)
SETTINGS = ("decay", "wd", "beta1", "beta2")


@dataclass(frozen=True)
class Rule:
    """An update rule: units in order (the last one's output is the update), a learning-rate decay,
    decoupled weight decay or not, and the betas of its running means (None: the optimizer's defaults)."""

    units: tuple[Unit, ...]
    decay: str | None = None
    weight_decay: bool = False
    beta1: float | None = None
    beta2: float | None = None
    _reads: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.units:
            raise RuleError("a rule needs at least one unit")
        if self.decay is not None and self.decay not in DECAYS:
            raise RuleError(f"unknown decay {self.decay!r}; known: {', '.join(DECAYS)}")
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if beta is not None and not 0.0 <= beta < 1.0:
                raise RuleError(f"{name}={beta} is out of range; a beta is in [0, 1)")
        for i, unit in enumerate(self.units):
            base = 5 * i
            for j, (name, kind) in enumerate(zip(unit.tokens, _KINDS, strict=True)):
                _check_token(name, kind, i, base + j + 1)
        object.__setattr__(self, "_reads", self._read_units())  # asked per unit at every optimizer step

    def __str__(self) -> str:
        return to_text(self)

    def reads(self, k: int) -> tuple[str, ...]:
        """The operands unit ``k`` (1-based) reads: both, or only the first where its binary function ignores the
        second (``keep``) and the second draws no random numbers (one that does still draws: later draws follow
        it). ``m rd identity identity keep`` reads m only: it needs no decay schedule, so no horizon."""
        return self._reads[k - 1]

    def _read_units(self) -> tuple[tuple[str, ...], ...]:
        """Each unit's `reads`, in one pass: a unit takes only earlier units' outputs."""
        draws: list[bool] = []  # whether each unit's output draws random numbers (what it reads does)
        out: list[tuple[str, ...]] = []

        def random(op: str, fn: str) -> bool:
            return fn in RANDOM_TOKENS or op in RANDOM_TOKENS or (op not in OPERANDS and draws[int(op[1:]) - 1])

        for unit in self.units:
            second = unit.b not in DROPS_SECOND or random(unit.op2, unit.u2)
            inputs = ((unit.op1, unit.u1), (unit.op2, unit.u2))[: 2 if second else 1]
            out.append(tuple(op for op, _ in inputs))
            draws.append(any(random(op, fn) for op, fn in inputs))
        return tuple(out)

    def operands(self) -> set[str]:
        """The base operands the live part of the rule reads (what decides the state kept)."""
        used: set[str] = set()
        todo, done = [len(self.units)], set()
        while todo:
            k = todo.pop()
            if k in done:
                continue
            done.add(k)
            for op in self.reads(k):
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
            earlier = f"the outputs of units 1..{unit_index}" if unit_index > 1 else "the output of unit 1"
            hint = f" (unit {unit_index + 1} can only use {earlier})" if unit_index else " (unit 1 comes first)"
        raise RuleError(f"unknown {kind} {name!r} at position {position}{hint}; known: {', '.join(known)}")


def parse(text: str) -> Rule:
    """Read a rule from its text form; errors say which token is wrong, where, and what is allowed."""
    if not text.strip():
        raise RuleError("empty rule text")
    segments = [s.strip() for s in text.split(";")]
    settings: dict[str, str] = {}
    while segments and "=" in segments[-1]:
        key, _, value = (part.strip() for part in segments.pop().partition("="))
        if key not in SETTINGS:
            raise RuleError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        if key in settings:
            raise RuleError(f"setting {key!r} is given twice")
        settings[key] = value
    decay = settings.get("decay")
    if decay is not None and decay not in DECAYS:
        raise RuleError(f"unknown decay {decay!r}; known: {', '.join(DECAYS)}")
    if settings.get("wd", "decoupled") not in WEIGHT_DECAYS:
        raise RuleError(f"unknown weight decay {settings['wd']!r}; known: {', '.join(WEIGHT_DECAYS)}")
    betas: dict[str, float] = {}
    for key in ("beta1", "beta2"):
        if key in settings:
            try:
                betas[key] = float(settings[key])
            except ValueError:
                raise RuleError(f"{key} must be a number, got {settings[key]!r}") from None
    units: list[Unit] = []
    for i, segment in enumerate(segments):
        tokens = segment.split()
        if len(tokens) != 5:
            raise RuleError(
                f"unit {i + 1} (from position {5 * i + 1}) has {len(tokens)} tokens {tokens}; "
                "expected 5: op1 op2 unary1 unary2 binary"
            )
        units.append(Unit(*tokens))
    return Rule(tuple(units), decay, "wd" in settings, **betas)  # checks every token, naming its position


def to_text(rule: Rule) -> str:
    """The text form; ``parse(to_text(r)) == r``."""
    parts = [" ".join(u.tokens) for u in rule.units]
    if rule.decay is not None:
        parts.append(f"decay={rule.decay}")
    if rule.weight_decay:
        parts.append("wd=decoupled")
    parts += [f"{k}={v:g}" for k, v in (("beta1", rule.beta1), ("beta2", rule.beta2)) if v is not None]
    return " ; ".join(parts)


# --- readable and LaTeX formulas -------------------------------------------------------------


def _formula(rule: Rule, latex: bool) -> str:
    outputs: list[str] = []
    for unit in rule.units:
        vals = []
        for op in (unit.op1, unit.op2):
            if op in OPERANDS:
                vals.append(OPERANDS[op].latex if latex else OPERANDS[op].text)
            else:
                vals.append(outputs[int(op[1:]) - 1])
        u1, u2, b = UNARY_FUNCTIONS[unit.u1], UNARY_FUNCTIONS[unit.u2], BINARY_FUNCTIONS[unit.b]
        if latex:
            outputs.append(b.latex(u1.latex(vals[0]), u2.latex(vals[1])))
        else:
            outputs.append(b.text(u1.text(vals[0]), u2.text(vals[1])))
    body = outputs[-1]
    if rule.weight_decay:
        body = rf"{body} + \lambda w" if latex else f"{body} + wd*w"
    body = wrap(body, latex)
    betas = [(k, v) for k, v in (("1", rule.beta1), ("2", rule.beta2)) if v is not None]
    tail = ""
    if betas:
        tail = ", ".join((rf"\beta_{k} = {v:g}" if latex else f"b{k}={v:g}") for k, v in betas)
        tail = rf", \quad {tail}" if latex else f"  [{tail}]"
    if rule.decay is not None:
        decay = OPERANDS[DECAYS[rule.decay]]
        return (rf"\eta \cdot {decay.latex} \cdot {body}" if latex else f"lr * {decay.text} * {body}") + tail
    return (rf"\eta \cdot {body}" if latex else f"lr * {body}") + tail


def to_formula(rule: Rule) -> str:
    """A readable formula of the update, e.g. ``lr * (exp(sign(g) * sign(m)) * g)``."""
    return _formula(rule, latex=False)


def to_latex(rule: Rule) -> str:
    """The update as LaTeX, for plot titles and papers."""
    return _formula(rule, latex=True)
