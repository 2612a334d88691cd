"""Write a discovered rule as a small Python file that defines its optimizer with PyTorch alone (no l2l)."""

from __future__ import annotations

from l2l.optsearch.compiler import state_keys
from l2l.optsearch.functional import live_units
from l2l.optsearch.language import DECAYS, OPERANDS, Rule, to_formula, to_text

_OPERAND_CODE = {
    "g": "g",
    "g2": "g * g",
    "g3": "g * g * g",
    "m": "state['exp_avg'] / (1 - beta1**t)",
    "v": "state['exp_avg_sq'] / (1 - beta2**t)",
    "m3": "state['exp_avg_cube'] / (1 - beta3**t)",
    "sign_g": "torch.sign(g)",
    "sign_m": "torch.sign(state['exp_avg'])",
    "one": "torch.ones_like(p)",
    "two": "torch.full_like(p, 2.0)",
    "noise": "torch.randn_like(p) * group['noise_std']",
    "1e-4w": "p * 1e-4",
    "1e-3w": "p * 1e-3",
    "1e-2w": "p * 1e-2",
    "1e-1w": "p * 1e-1",
    "adam": (
        "state['exp_avg'] / (state['exp_avg_sq'].sqrt() / math.sqrt(1 - beta2**t) + group['eps']) / (1 - beta1**t)"
    ),
    "rmsprop": "g / (state['square_avg'].sqrt() + group['eps'])",
    "ld": "torch.full_like(p, _decay('ld', t0, group))",
    "cd": "torch.full_like(p, _decay('cd', t0, group))",
    "rd": "torch.full_like(p, _decay('rd', t0, group))",
}


def _unary_code(name: str, x: str) -> str:
    if name == "identity":
        return x
    if name.startswith("clip"):
        return f"torch.clamp({x}, -{name[4:]}, {name[4:]})"
    if name.startswith("drop"):
        p = name[4:]
        return f"({x}) * (torch.rand_like(p) >= {p}).to(p.dtype) / (1 - {p})"
    return {
        "neg": f"-({x})",
        "exp": f"torch.exp({x})",
        "log": f"torch.log(torch.abs({x}))",
        "sqrt": f"torch.sqrt(torch.abs({x}))",
        "sign": f"torch.sign({x})",
    }[name]


def _binary_code(name: str, a: str, b: str) -> str:
    return {
        "keep": a,
        "add": f"{a} + {b}",
        "sub": f"{a} - {b}",
        "mul": f"{a} * {b}",
        "div": f"{a} / ({b} + 1e-8)",
        "pow": f"torch.sign({a}) * torch.abs({a}) ** {b}",
    }[name]


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
    if name == "ld":
        return max(0.0, 1.0 - t / total)
    if name == "cd":
        return 0.5 * (1.0 + math.cos(2.0 * math.pi * cycles * t / total))
    period = total / cycles
    return 0.5 * (1.0 + math.cos(math.pi * (t % period) / period))


class {class_name}(torch.optim.Optimizer):
    def __init__(self, params, lr={lr!r}, betas=(0.9, 0.999, 0.999), alpha=0.99, eps=1e-8, noise_std=0.01,
                 total_steps=None, cycles=10):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {{lr}}")
        defaults = dict(lr=lr, betas=tuple(betas), alpha=alpha, eps=eps, noise_std=noise_std,
                        total_steps=total_steps, cycles=cycles)
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


def export_source(rule: Rule, class_name: str = "DiscoveredOptimizer", lr: float = 1e-3, module: str = "") -> str:
    """Python source of a standalone optimizer class applying ``rule`` (same math as `RuleOptimizer`)."""
    if not class_name.isidentifier():
        raise ValueError(f"class name {class_name!r} is not a Python identifier")
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
    if "exp_avg" in keys:
        body.append(f"{ind}state['exp_avg'].lerp_(g, 1 - beta1)")
    if "exp_avg_sq" in keys:
        body.append(f"{ind}state['exp_avg_sq'].mul_(beta2).addcmul_(g, g, value=1 - beta2)")
    if "exp_avg_cube" in keys:
        body.append(f"{ind}state['exp_avg_cube'].mul_(beta3).add_(g * g * g, alpha=1 - beta3)")
    if "square_avg" in keys:
        body.append(f"{ind}state['square_avg'].mul_(alpha).addcmul_(g, g, value=1 - alpha)")
    used = sorted(op for op in rule.operands() if op in OPERANDS and op not in DECAYS.values())
    for op in used:
        body.append(f"{ind}{_var(op)} = {_OPERAND_CODE[op]}")
    live = live_units(rule)
    for k, unit in enumerate(rule.units, start=1):
        if k not in live:
            continue
        x = _unary_code(unit.u1, _ref(unit.op1))
        y = _unary_code(unit.u2, _ref(unit.op2))
        body.append(f"{ind}u{k} = {_binary_code(unit.b, f'({x})', f'({y})')}")
    lr_expr = "group['lr']"
    if rule.decay is not None:
        lr_expr += f" * _decay({DECAYS[rule.decay]!r}, t0, group)"
    body.append(f"{ind}p.add_(u{len(rule.units)}, alpha=-{lr_expr})")
    total_hint = ", total_steps=1000" if any(op in DECAYS.values() for op in rule.operands()) else ""
    return _TEMPLATE.format(
        class_name=class_name,
        formula=to_formula(rule),
        text=to_text(rule),
        module=module or "discovered_optimizer",
        lr=lr,
        total_hint=total_hint,
        init="\n".join(init) or "                    pass",
        body="\n".join(body),
    )


def _var(op: str) -> str:
    return "op_" + op.replace("-", "m").replace(".", "_")


def _ref(op: str) -> str:
    if op in DECAYS.values():
        return _OPERAND_CODE[op]
    return _var(op) if op in OPERANDS else op
