"""Known optimizers written in the rule language, shipped as named presets."""

from __future__ import annotations

from l2l.optsearch.language import Rule, RuleError, parse

PRESETS: dict[str, str] = {
    # torch.optim.SGD without momentum, step for step
    "sgd": "g one identity identity keep",
    # heavy ball on the bias-corrected running mean m (beta 0.9); like SGD(momentum=0.9) at 10x its lr
    "momentum": "m one identity identity keep",
    # torch.optim.Adam with its defaults, step for step
    "adam": "adam one identity identity keep",
    # torch.optim.RMSprop with its defaults, step for step
    "rmsprop": "rmsprop one identity identity keep",
    # Bello et al.: exp(sign(g) * sign(m)) * g
    "powersign": "sign_g sign_m identity identity mul ; u1 g exp identity mul",
    # Bello et al.: (1 + sign(g) * sign(m)) * g
    "addsign": "sign_g sign_m identity identity mul ; one u1 identity identity add ; u2 g identity identity mul",
    # Lion-like (Chen et al. 2023): the sign of the momentum
    "lion": "sign_m one identity identity keep",
}


def preset(name: str) -> Rule:
    """The rule of a named preset."""
    if name not in PRESETS:
        raise RuleError(f"unknown optimizer preset {name!r}; known: {', '.join(PRESETS)}")
    return parse(PRESETS[name])
