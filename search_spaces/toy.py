"""`toy`: a space whose best token sequence is known and whose reward costs nothing to compute."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, SpaceError, Spec, token_sizes


class ToySpace(SearchSpace):
    """Layers of (op, size) choices plus skip anchors; reward = fraction of tokens matching a hidden target.

    Options: ``layers`` (3), ``ops`` (4 options per op decision), ``sizes`` (3), ``target_seed`` (0)
    choose the space and its hidden optimum; ``noise`` (0.0) adds Gaussian noise to the reward,
    seeded per child, to mimic the noise of real training.
    """

    name = "toy"
    description = "Instant reward: fraction of tokens equal to a hidden target (optimum known)."

    def __init__(self, layers: int = 3, ops: int = 4, sizes: int = 3, target_seed: int = 0, noise: float = 0.0) -> None:
        if layers < 1 or ops < 2 or sizes < 2:
            raise SpaceError(f"toy space needs layers >= 1, ops >= 2, sizes >= 2; got {layers}, {ops}, {sizes}")
        if not 0 <= noise < float("inf"):
            raise SpaceError(f"toy space noise must be a finite sd >= 0, got {noise}")
        super().__init__(layers=layers, ops=ops, sizes=sizes, target_seed=target_seed, noise=noise)
        self.layers, self.ops, self.sizes, self.noise = layers, ops, sizes, noise
        self._decisions: list[Decision] = []
        for i in range(layers):
            self._decisions.append(Decision.categorical(f"op_{i}", [f"op{k}" for k in range(ops)]))
            self._decisions.append(Decision.categorical(f"size_{i}", [str(2 ** (k + 3)) for k in range(sizes)]))
            self._decisions.append(Decision.anchor(f"skip_{i}", i))
        rng = random.Random(target_seed)
        self._target = tuple(rng.randrange(k) for k in token_sizes(self._decisions))

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def optimum(self) -> tuple[int, ...]:
        return self._target

    def exact_rewards(self) -> bool:
        return not self.noise

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        tokens = self.encode(spec)
        score = sum(a == b for a, b in zip(tokens, self._target, strict=True)) / len(self._target)
        if self.noise:
            score += random.Random(ctx.seed).gauss(0.0, self.noise)
        return Result(reward=score, val_acc=score, val_loss=-math.log(max(score, 1e-6)))
