"""Write a discovered rule as a small Python file that defines its optimizer with PyTorch alone (no l2l)."""

from __future__ import annotations

from l2l.optsearch.compiler import state_keys
from l2l.optsearch.functional import live_units
from l2l.optsearch.language import DECAYS, Rule, to_formula, to_text
from l2l.optsearch.simplify import simplified_rule
from l2l.optsearch.vocabulary import BINARY_FUNCTIONS, DROPS_SECOND, OPERANDS, STATISTICS, UNARY_FUNCTIONS

_TEMPLATE = '''"""{class_name}: an optimizer found by l2l's neural optimizer search.

Update: {formula}
Rule:   {text}

Needs only PyTorch. Use it like any torch.optim optimizer:

    from {module} import {class_name}
    opt = {class_name}(model.parameters(), lr={lr!r}{total_hint})
"""

import math

import torch


def _decay(name, t, group):
    total, cycles = group["total_steps"], group["cycles"]
    if total is None:
        raise ValueError("this optimizer uses a decay schedule: pass total_steps=<number of steps>")
{schedules}
    raise ValueError(f"unknown decay schedule {{name!r}}")


class {class_name}(torch.optim.Optimizer):
    def __init__(self, params, lr={lr!r}, betas={betas!r}, alpha=0.99, eps=1e-8, noise_std=0.01,
                 total_steps=None, cycles=10, weight_decay={weight_decay!r}):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {{lr}}")
{total_check}        defaults = dict(lr=lr, betas=tuple(betas), alpha=alpha, eps=eps, noise_std=noise_std,
                        total_steps=total_steps, cycles=cycles, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2, beta3 = group["betas"]
            alpha = group["alpha"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
{init}
{body}
        return loss
'''


def class_name_problem(class_name: str) -> str | None:
    """Why ``class_name`` cannot name the exported class (None when it can): not an identifier, a keyword, or
    a name the exported file uses itself (``torch``, ``math``, a builtin it calls), which the class would hide."""
    import keyword

    if not class_name.isidentifier():
        return f"{class_name!r} is not a Python identifier"
    if keyword.iskeyword(class_name):
        return f"{class_name!r} is a Python keyword"
    if class_name in _names_the_file_uses():
        return f"{class_name!r} is a name the exported file uses itself, which the class would hide"
    return None


def _names_the_file_uses() -> frozenset[str]:
    """Every name the exported file's code reads or defines, whatever the rule (the template with every
    statistic, operand and function of the language), the class's own name left out."""
    import ast

    placeholder = "L2lPlaceholderClass"
    source = _TEMPLATE.format(
        class_name=placeholder, formula="", text="", module="m", lr=0.001, total_hint="", total_check="",
        betas=(0.9, 0.999, 0.999), weight_decay=0.0, schedules=_schedules(), init=" " * 20 + "pass", body="",
    )  # fmt: skip
    codes = [s.code for s in STATISTICS.values()] + [o.code for o in OPERANDS.values()]
    a, b = "L2lArgA", "L2lArgB"  # the functions' arguments: names of no file
    codes += [f.code(a, b) for f in BINARY_FUNCTIONS.values()] + [f.code(a) for f in UNARY_FUNCTIONS.values()]
    names: set[str] = set()
    for text in [source, *codes]:
        for node in ast.walk(ast.parse(text.strip())):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
    return frozenset(names - {placeholder, a, b})


def export_source(rule: Rule, class_name: str = "DiscoveredOptimizer", lr: float = 1e-3, module: str = "") -> str:
    """Python source of a standalone optimizer class applying ``rule`` (same math as `RuleOptimizer`; random
    draws come parameter by parameter, where `RuleOptimizer` draws unit by unit over all parameters)."""
    problem = class_name_problem(class_name)
    if problem is not None:
        raise ValueError(f"class name {problem}")
    keys = state_keys(rule)
    init = [f"                    state[{k!r}] = torch.zeros_like(p)" for k in keys if k != "step"]
    if "step" in keys:
        init.append("                    state['step'] = 0.0")
    body: list[str] = []
    ind = " " * 16
    if "step" in keys:
        body += [f"{ind}state['step'] += 1.0", f"{ind}t = state['step']", f"{ind}t0 = t - 1.0"]
    else:
        body.append(f"{ind}t0 = 0.0")
    after_steps = len(body)
    body += [f"{ind}{statistic.code}" for key, statistic in STATISTICS.items() if key in keys and not statistic.after]
    used = sorted(op for op in rule.operands() if op in OPERANDS and op not in DECAYS.values())
    for op in used:
        body.append(f"{ind}{_var(op)} = {OPERANDS[op].code}")
    live = live_units(rule)
    for k, unit in enumerate(rule.units, start=1):
        if k not in live:
            continue
        x = UNARY_FUNCTIONS[unit.u1].code(_ref(unit.op1))
        y = UNARY_FUNCTIONS[unit.u2].code(_ref(unit.op2))
        body.append(f"{ind}u{k} = {BINARY_FUNCTIONS[unit.b].code(f'({x})', f'({y})')}")
        if unit.b in DROPS_SECOND and len(rule.reads(k)) == 2:  # a random argument keep drops still draws
            body.append(f"{ind}_ = {y}  # drawn as the rule draws it (later draws follow it), then dropped")
    lr_expr = "group['lr']"
    if rule.decay is not None:
        lr_expr += f" * _decay({DECAYS[rule.decay]!r}, t0, group)"
    if rule.weight_decay:  # decoupled, before the update, as torch.optim.AdamW
        body.insert(after_steps, f"{ind}p.mul_(1 - {lr_expr} * group['weight_decay'])")
    body.append(f"{ind}p.add_(u{len(rule.units)}, alpha=-{lr_expr})")
    body += [f"{ind}{statistic.code}" for key, statistic in STATISTICS.items() if key in keys and statistic.after]
    decays = rule.decay is not None or any(op in DECAYS.values() for op in rule.operands())
    total_hint = ", total_steps=1000" if decays else ""
    total_check = (
        "        if total_steps is None:  # its schedule needs the horizon: say so here, not at the first step\n"
        '            raise ValueError("this optimizer uses a decay schedule: pass total_steps=<number of steps>")\n'
        if decays
        else ""
    )
    return _TEMPLATE.format(
        class_name=class_name,
        formula=to_formula(simplified_rule(rule)),  # as `l2l optimizers top` shows it
        text=to_text(rule),
        module=module or "discovered_optimizer",
        lr=lr,
        total_hint=total_hint,
        total_check=total_check,
        betas=(0.9 if rule.beta1 is None else rule.beta1, 0.999 if rule.beta2 is None else rule.beta2, 0.999),
        weight_decay=0.01 if rule.weight_decay else 0.0,
        schedules=_schedules(),
        init="\n".join(init) or "                    pass",
        body="\n".join(body),
    )


def _var(op: str) -> str:
    return "op_" + op.replace("-", "m").replace(".", "_")


def _ref(op: str) -> str:
    if op in DECAYS.values():
        return OPERANDS[op].code
    return _var(op) if op in OPERANDS else op


def _schedules() -> str:
    lines = []
    for name, op in OPERANDS.items():
        if op.schedule is not None:
            lines += [f"    if name == {name!r}:", f"        return {op.schedule_code}"]
    return "\n".join(lines)
