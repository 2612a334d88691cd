"""Known optimizers written in the rule language, shipped as named presets."""

from __future__ import annotations

from l2l.optsearch.language import Rule, RuleError, parse

PRESETS: dict[str, str] = {
    # torch.optim.SGD without momentum, step for step
    "sgd": "g one identity identity keep",
    # heavy ball on the bias-corrected running mean m (beta 0.9); like SGD(momentum=0.9) at 10x its lr
    "momentum": "m one identity identity keep",
    # torch.optim.SGD(momentum=0.9), step for step
    "sgdm": "buf one identity identity keep",
    # torch.optim.Adam with its defaults, step for step
    "adam": "adam one identity identity keep",
    # torch.optim.RMSprop with its defaults, step for step
    "rmsprop": "rmsprop one identity identity keep",
    # Bello et al.: exp(sign(g) * sign(m)) * g
    "powersign": "sign_g sign_m identity identity mul ; u1 g exp identity mul",
    # Bello et al.: (1 + sign(g) * sign(m)) * g
    "addsign": "sign_g sign_m identity identity mul ; one u1 identity identity add ; u2 g identity identity mul",
    # torch.optim.AdamW (decoupled weight decay, 0.01 by default), step for step
    "adamw": "adam one identity identity keep ; wd=decoupled",
    # Lion (Chen et al. 2023) by its published update, step for step: sign(b1*mu + (1-b1)*g) + wd*w,
    # then mu <- b2*mu + (1-b2)*g, with b1 = 0.9, b2 = 0.99
    "lion": "ipol one sign identity keep ; wd=decoupled ; beta2=0.99",
    # Signum (Bernstein et al. 2018): the sign of the momentum
    "signum": "sign_m one identity identity keep",
}


def preset(name: str) -> Rule:
    """The rule of a named preset."""
    if name not in PRESETS:
        raise RuleError(f"unknown optimizer preset {name!r}; known: {', '.join(PRESETS)}")
    return parse(PRESETS[name])
