"""Compile an update rule into a `torch.optim.Optimizer`.

The optimizer class holds the per-parameter state and the hyperparameters; the math is the pure
multi-tensor code of the token table (`l2l.optsearch.vocabulary`) walked by `l2l.optsearch.functional`,
as in torch.optim. Only the state the rule reads is
kept: SGD keeps nothing, PowerSign keeps one running mean, Adam two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from l2l.optsearch.functional import decay_value, evaluate
from l2l.optsearch.language import DECAYS, Rule, RuleError, parse
from l2l.optsearch.vocabulary import OPERANDS, STATISTICS, Step, Tensors


def state_keys(rule: Rule) -> tuple[str, ...]:
    """Names of the per-parameter state the rule keeps (``step`` included when anything counts steps)."""
    used = [OPERANDS[op] for op in rule.operands()]
    keys = sorted({k for op in used for k in op.stats})
    if any(op.counts_steps for op in used):
        keys.append("step")
    return tuple(keys)


def direct_operand(rule: Rule) -> str | None:
    """The operand a rule's update is, unchanged (``adam one identity identity keep`` is Adam's update).

    Such rules are applied in place, without building the update tensor first: the step then costs
    what the hand-written optimizer's costs.
    """
    last = rule.units[-1]
    if last.b != "keep" or last.u1 != "identity" or last.op1 not in OPERANDS:
        return None
    return last.op1


class RuleOptimizer(torch.optim.Optimizer):
    """A `torch.optim.Optimizer` that applies ``w <- w - lr * decay(t) * rule(...)``.

    Hyperparameters (per param group, like any PyTorch optimizer): ``lr``; ``betas`` of the running
    means of g, g^2 and g^3 (0.9, 0.999, 0.999, or the rule's ``beta1`` and ``beta2``; Lion's momentum
    uses the second); ``alpha`` of RMSProp's running mean (0.99); ``eps`` (1e-8) inside Adam and RMSProp;
    ``noise_std`` (0.01); ``total_steps`` and ``cycles`` for the decay schedules (needed only by rules that
    use one); ``weight_decay`` (0.01, as torch.optim.AdamW) for rules with ``wd=decoupled``, applied as
    ``w <- w * (1 - lr * weight_decay)`` before the update.
    """

    def __init__(
        self,
        params: Iterable[Any],
        rule: Rule | str,
        lr: float = 1e-3,
        betas: tuple[float, float, float] | None = None,
        alpha: float = 0.99,
        eps: float = 1e-8,
        noise_std: float = 0.01,
        total_steps: int | None = None,
        cycles: int = 10,
        weight_decay: float | None = None,
    ) -> None:
        self.rule = parse(rule) if isinstance(rule, str) else rule
        if not isinstance(self.rule, Rule):
            raise RuleError(f"rule must be a Rule or its text, got {type(rule).__name__}")
        if betas is None:
            b1, b2 = self.rule.beta1, self.rule.beta2
            betas = (0.9 if b1 is None else b1, 0.999 if b2 is None else b2, 0.999)
        if weight_decay is None:
            weight_decay = 0.01 if self.rule.weight_decay else 0.0
        if not weight_decay >= 0.0 or (weight_decay and not self.rule.weight_decay):
            raise ValueError(
                f"invalid weight_decay {weight_decay}: >= 0, and only for rules with wd=decoupled (rule {self.rule})"
            )
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if len(betas) != 3 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid betas {betas}: three values in [0, 1) for the means of g, g^2, g^3")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"invalid alpha {alpha}: must be in [0, 1)")
        if not eps > 0.0 or not noise_std >= 0.0:
            raise ValueError(f"invalid eps {eps} or noise_std {noise_std}: eps > 0, noise_std >= 0")
        if cycles < 1:
            raise ValueError(f"invalid cycles {cycles}: must be >= 1")
        uses_decay = sorted(op for op in self.rule.operands() if OPERANDS[op].schedule is not None)
        if uses_decay and (total_steps is None or total_steps < 1):
            raise RuleError(
                f"rule {self.rule} uses the decay schedule(s) {uses_decay}, which need total_steps >= 1 "
                f"(got {total_steps})"
            )
        self.state_keys = state_keys(self.rule)
        self._direct = direct_operand(self.rule)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            alpha=alpha,
            eps=eps,
            noise_std=noise_std,
            total_steps=total_steps,
            cycles=cycles,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            for key in self.state_keys:
                state[key] = 0.0 if key == "step" else torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: Tensors = []
            grads: Tensors = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RuleOptimizer does not support sparse gradients")
                params.append(p)
                grads.append(p.grad)
            if params:
                self._group_step(group, params, grads)
        return loss

    def _group_step(self, group: dict[str, Any], params: Tensors, grads: Tensors) -> None:
        states = [self._init_state(p) for p in params]
        steps: list[float] = []
        if "step" in self.state_keys:
            for s in states:
                s["step"] += 1.0
            steps = [s["step"] for s in states]
        stats = {key: [s[key] for s in states] for key in self.state_keys if key != "step"}
        for key, statistic in STATISTICS.items():
            if key in stats and not statistic.after:
                statistic.update(stats[key], grads, group)
        t = max(steps) - 1.0 if steps else 0.0  # schedules start at full strength on the first step
        step = Step(params, grads, stats, steps, t, group)
        lr = float(group["lr"])
        if self.rule.decay is not None:
            lr *= decay_value(DECAYS[self.rule.decay], t, float(group["total_steps"]), int(group["cycles"]))
        if self.rule.weight_decay and group.get("weight_decay"):  # decoupled, first: as torch.optim.AdamW
            torch._foreach_mul_(params, 1.0 - lr * float(group["weight_decay"]))
        in_place = OPERANDS[self._direct].in_place if self._direct is not None else None
        if in_place is not None:  # e.g. Adam's update, applied in place as torch.optim.Adam does
            in_place(step, lr)
        else:
            update = evaluate(self.rule, lambda name: OPERANDS[name].compute(step), params)
            if isinstance(update, float):
                torch._foreach_add_(params, -lr * update)
            else:
                torch._foreach_add_(params, update, alpha=-lr)
        for key, statistic in STATISTICS.items():
            if key in stats and statistic.after:  # Lion's momentum takes g after the step read it
                statistic.update(stats[key], grads, group)


def compile_rule(rule: Rule | str, **hyper: Any) -> Callable[[Iterable[Any], float], torch.optim.Optimizer]:
    """An optimizer factory ``(params, lr) -> RuleOptimizer`` for training loops that take one."""
    parsed = parse(rule) if isinstance(rule, str) else rule

    def factory(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
        return RuleOptimizer(params, parsed, lr=lr, **hyper)

    return factory
