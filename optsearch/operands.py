"""The base operands of the update-rule language (arity 0) and the running statistics they read.

One entry per operand says how it is printed (readable and LaTeX), how the compiled optimizer computes
it over lists of tensors, which running statistics and step counts it needs, the PyTorch expression the
exporter writes, and its value on the update heatmaps. `l2l.optsearch.vocabulary` adds the unary and
binary functions; together they are the language's one table, read by the parser and printer
(`language`), the compiler and its math (`compiler`, `functional`), the exporter and the plots.

A value is either a Python float (constants, decays and what is computed from them alone) or a list
holding one tensor per parameter. Every computation is out of place, so an operand such as the
gradient list is never modified by the expression that reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

Tensors = list[torch.Tensor]
Value = float | Tensors
DIV_EPS = 1e-8


@dataclass(frozen=True)
class Step:
    """What a compiled optimizer knows at one step of one param group; every operand is computed from it."""

    params: Tensors
    grads: Tensors
    stats: Mapping[str, Tensors]  # running statistics by state key (see STATISTICS)
    steps: Sequence[float]  # each parameter's step count (empty when no operand counts steps)
    t: float  # the schedules' position: 0 on the first step
    group: Mapping[str, Any]  # the param group's hyperparameters

    def beta(self, i: int) -> float:
        """``betas[i]`` of the group: 0 for the mean of g, 1 for g^2, 2 for g^3."""
        return float(self.group["betas"][i])


@dataclass(frozen=True)
class Statistic:
    """A running statistic kept per parameter, updated in place from the gradients before operands are read."""

    update: Callable[[Tensors, Tensors, Mapping[str, Any]], None]  # (statistic, grads, group)
    code: str  # the same update in the exported file (``g``, ``state``, ``beta1..3``, ``alpha`` in scope)
    after: bool = False  # updated after the parameters moved (Lion reads its momentum before adding g)


@dataclass(frozen=True)
class Operand:
    """A base operand: the gradient, a running mean, a constant, a decay schedule, a known optimizer's update."""

    arity: ClassVar[int] = 0
    text: str
    latex: str
    compute: Callable[[Step], Value]
    code: str  # exported expression (``p``, ``g``, ``state``, ``group``, ``beta1..3``, ``t`` in scope)
    surface: Callable[[torch.Tensor, torch.Tensor], Value]  # its value on the heatmap at gradient g, momentum m
    help: str = ""
    stats: tuple[str, ...] = ()  # the running statistics it reads
    counts_steps: bool = False  # needs the per-parameter step count
    in_place: Callable[[Step, float], None] | None = None  # applies ``p -= lr * operand`` without a temporary
    decay: str | None = None  # the name ``decay=NAME`` gives this schedule
    schedule: Callable[[float, float, int], float] | None = None  # (t, total steps, cycles) -> factor
    schedule_code: str = ""  # the same schedule in the exported file (``t``, ``total``, ``cycles`` in scope)


# --- base operands ---------------------------------------------------------------------------


def bias_corrected(avgs: Tensors, beta: float, steps: Sequence[float]) -> Tensors:
    """Running means divided by 1 - beta^t (t per parameter), as Adam does."""
    return list(torch._foreach_div(avgs, [1.0 - beta**t for t in steps]))


def _powers(s: Step, n: int) -> Tensors:
    out = torch._foreach_mul(s.grads, s.grads)
    if n == 3:
        torch._foreach_mul_(out, s.grads)
    return list(out)


def _adam_denominator(s: Step) -> Tensors:
    denom = torch._foreach_sqrt(s.stats["exp_avg_sq"])
    torch._foreach_div_(denom, [(1.0 - s.beta(1) ** n) ** 0.5 for n in s.steps])
    torch._foreach_add_(denom, s.group["eps"])
    return list(denom)


def _adam(s: Step) -> Tensors:
    out = torch._foreach_div(s.stats["exp_avg"], _adam_denominator(s))
    torch._foreach_div_(out, [1.0 - s.beta(0) ** n for n in s.steps])
    return list(out)


def _adam_in_place(s: Step, lr: float) -> None:  # as torch.optim.Adam applies it
    scales = [-lr / (1.0 - s.beta(0) ** n) for n in s.steps]
    torch._foreach_addcdiv_(s.params, s.stats["exp_avg"], _adam_denominator(s), scales)


def _rmsprop_denominator(s: Step) -> Tensors:
    denom = torch._foreach_sqrt(s.stats["square_avg"])
    torch._foreach_add_(denom, s.group["eps"])
    return list(denom)


def _rmsprop_in_place(s: Step, lr: float) -> None:
    torch._foreach_addcdiv_(s.params, s.grads, _rmsprop_denominator(s), value=-lr)


def _weight(scale: float, power: int) -> Operand:
    return Operand(
        text=f"1e-{power}*w",
        latex=rf"10^{{-{power}}} w",
        compute=lambda s: list(torch._foreach_mul(s.params, scale)),
        code=f"p * 1e-{power}",
        surface=lambda g, m: [torch.zeros_like(g)],  # at w = 0
    )


def _decay(name: str, decay: str, latex: str, schedule: Callable[[float, float, int], float], code: str) -> Operand:
    return Operand(
        text=name,
        latex=latex,
        compute=lambda s: schedule(s.t, float(s.group["total_steps"]), int(s.group["cycles"])),
        code=f"torch.full_like(p, _decay({name!r}, t0, group))",
        surface=lambda g, m: 1.0,  # at its start
        counts_steps=True,
        decay=decay,
        schedule=schedule,
        schedule_code=code,
    )


def _restart(t: float, total: float, cycles: int) -> float:
    period = total / cycles
    return 0.5 * (1.0 + math.cos(math.pi * (t % period) / period))


def _interpolation(s: Step) -> Tensors:  # as Lion computes it: exp_avg * beta1 + grad * (1 - beta1)
    out = torch._foreach_mul(s.stats["lion_avg"], s.beta(0))
    torch._foreach_add_(out, s.grads, alpha=1.0 - s.beta(0))
    return list(out)


def _v_surface(g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (g * g + m * m) / 2  # a running mean of g^2 that has seen both


_EXP_AVG = "state['exp_avg']"

# the order is the order of the search space's options
OPERANDS: dict[str, Operand] = {
    "g": Operand("g", "g", lambda s: s.grads, "g", lambda g, m: [g], help="the gradient"),
    "g2": Operand("g^2", "g^2", lambda s: _powers(s, 2), "g * g", lambda g, m: [g * g]),
    "g3": Operand("g^3", "g^3", lambda s: _powers(s, 3), "g * g * g", lambda g, m: [g**3]),
    "m": Operand(
        "m",
        r"\hat{m}",
        lambda s: bias_corrected(s.stats["exp_avg"], s.beta(0), s.steps),
        f"{_EXP_AVG} / (1 - beta1**t)",
        lambda g, m: [m],
        help="running mean of g (beta 0.9), bias-corrected",
        stats=("exp_avg",),
        counts_steps=True,
    ),
    "v": Operand(
        "v",
        r"\hat{v}",
        lambda s: bias_corrected(s.stats["exp_avg_sq"], s.beta(1), s.steps),
        "state['exp_avg_sq'] / (1 - beta2**t)",
        lambda g, m: [_v_surface(g, m)],
        help="running mean of g^2 (beta 0.999), bias-corrected",
        stats=("exp_avg_sq",),
        counts_steps=True,
    ),
    "m3": Operand(
        "m3",
        r"\hat{\gamma}",
        lambda s: bias_corrected(s.stats["exp_avg_cube"], s.beta(2), s.steps),
        "state['exp_avg_cube'] / (1 - beta3**t)",
        lambda g, m: [g**3],
        help="running mean of g^3 (beta 0.999), bias-corrected",
        stats=("exp_avg_cube",),
        counts_steps=True,
    ),
    "sign_g": Operand(
        "sign(g)",
        r"\operatorname{sign}(g)",
        lambda s: list(torch._foreach_sign(s.grads)),
        "torch.sign(g)",
        lambda g, m: [torch.sign(g)],
    ),
    "sign_m": Operand(
        "sign(m)",
        r"\operatorname{sign}(\hat{m})",
        lambda s: list(torch._foreach_sign(s.stats["exp_avg"])),
        f"torch.sign({_EXP_AVG})",
        lambda g, m: [torch.sign(m)],
        stats=("exp_avg",),
        counts_steps=True,
    ),
    "one": Operand("1", "1", lambda s: 1.0, "torch.ones_like(p)", lambda g, m: 1.0),
    "two": Operand("2", "2", lambda s: 2.0, "torch.full_like(p, 2.0)", lambda g, m: 2.0),
    "noise": Operand(
        "noise",
        r"\epsilon",
        lambda s: [torch.randn_like(p) * s.group["noise_std"] for p in s.params],
        "torch.randn_like(p) * group['noise_std']",
        lambda g, m: [torch.zeros_like(g)],  # no noise on the heatmap
        help="Gaussian noise, standard deviation 0.01",
    ),
    "1e-4w": _weight(1e-4, 4),
    "1e-3w": _weight(1e-3, 3),
    "1e-2w": _weight(1e-2, 2),
    "1e-1w": _weight(1e-1, 1),
    "adam": Operand(
        "adam",
        r"\mathrm{Adam}",
        _adam,
        f"{_EXP_AVG} / (state['exp_avg_sq'].sqrt() / math.sqrt(1 - beta2**t) + group['eps']) / (1 - beta1**t)",
        lambda g, m: [m / (_v_surface(g, m).sqrt() + 1e-8)],
        help="Adam's update m / (sqrt(v) + 1e-8)",
        stats=("exp_avg", "exp_avg_sq"),
        counts_steps=True,
        in_place=_adam_in_place,
    ),
    "rmsprop": Operand(
        "rmsprop",
        r"\mathrm{RMSProp}",
        lambda s: list(torch._foreach_div(s.grads, _rmsprop_denominator(s))),
        "g / (state['square_avg'].sqrt() + group['eps'])",
        lambda g, m: [g / (_v_surface(g, m).sqrt() + 1e-8)],
        help="RMSProp's update g / (sqrt(r) + 1e-8), r the running mean of g^2 with alpha 0.99",
        stats=("square_avg",),
        in_place=_rmsprop_in_place,
    ),
    "ld": _decay(
        "ld",
        "linear",
        r"d_{\mathrm{lin}}",
        lambda t, total, cycles: max(0.0, 1.0 - t / total),
        "max(0.0, 1.0 - t / total)",
    ),
    "cd": _decay(
        "cd",
        "cyclic",
        r"d_{\mathrm{cyc}}",
        lambda t, total, cycles: 0.5 * (1.0 + math.cos(2.0 * math.pi * cycles * t / total)),
        "0.5 * (1.0 + math.cos(2.0 * math.pi * cycles * t / total))",
    ),
    "rd": _decay(
        "rd",
        "restart",
        r"d_{\mathrm{rst}}",
        _restart,
        "0.5 * (1.0 + math.cos(math.pi * (t % (total / cycles)) / (total / cycles)))",
    ),
    "ipol": Operand(
        "b1*mu + (1-b1)*g",
        r"\beta_1 \mu + (1 - \beta_1) g",
        _interpolation,
        "state['lion_avg'] * beta1 + g * (1 - beta1)",
        lambda g, m: [0.9 * m + 0.1 * g],
        help="Lion's interpolation b1*mu + (1-b1)*g, mu the running mean of g with beta2, updated after the step",
        stats=("lion_avg",),
    ),
    "buf": Operand(
        "buf",
        "b",
        lambda s: s.stats["momentum_buffer"],
        "state['momentum_buffer']",
        lambda g, m: [m * 10.0],  # a sum of g's with weights 0.9^k: about ten times their mean
        help="torch's SGD momentum buffer b <- beta1 * b + g (no bias correction)",
        stats=("momentum_buffer",),
    ),
}


def _lerp_mean(avgs: Tensors, grads: Tensors, group: Mapping[str, Any]) -> None:
    torch._foreach_lerp_(avgs, grads, 1.0 - group["betas"][0])


def _square_mean(avgs: Tensors, grads: Tensors, decay: float) -> None:
    torch._foreach_mul_(avgs, decay)
    torch._foreach_addcmul_(avgs, grads, grads, value=1.0 - decay)


def _lion_mean(avgs: Tensors, grads: Tensors, decay: float) -> None:
    torch._foreach_mul_(avgs, decay)
    torch._foreach_add_(avgs, grads, alpha=1.0 - decay)


def _heavy_ball(bufs: Tensors, grads: Tensors, momentum: float) -> None:  # as torch.optim.SGD(momentum=...)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)


def _cube_mean(avgs: Tensors, grads: Tensors, group: Mapping[str, Any]) -> None:
    cube = torch._foreach_mul(grads, grads)
    torch._foreach_mul_(cube, grads)
    torch._foreach_mul_(avgs, group["betas"][2])
    torch._foreach_add_(avgs, cube, alpha=1.0 - group["betas"][2])


STATISTICS: dict[str, Statistic] = {
    "exp_avg": Statistic(_lerp_mean, f"{_EXP_AVG}.lerp_(g, 1 - beta1)"),
    "exp_avg_sq": Statistic(
        lambda avgs, grads, group: _square_mean(avgs, grads, group["betas"][1]),
        "state['exp_avg_sq'].mul_(beta2).addcmul_(g, g, value=1 - beta2)",
    ),
    "exp_avg_cube": Statistic(_cube_mean, "state['exp_avg_cube'].mul_(beta3).add_(g * g * g, alpha=1 - beta3)"),
    "lion_avg": Statistic(
        lambda avgs, grads, group: _lion_mean(avgs, grads, group["betas"][1]),
        "state['lion_avg'].mul_(beta2).add_(g, alpha=1 - beta2)",
        after=True,
    ),
    "momentum_buffer": Statistic(
        lambda bufs, grads, group: _heavy_ball(bufs, grads, group["betas"][0]),
        "state['momentum_buffer'].mul_(beta1).add_(g)",
    ),
    "square_avg": Statistic(
        lambda avgs, grads, group: _square_mean(avgs, grads, group["alpha"]),
        "state['square_avg'].mul_(alpha).addcmul_(g, g, value=1 - alpha)",
    ),
}
