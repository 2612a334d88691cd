"""Search spaces used by the tests: well-formed ones that fail on purpose, and malformed ones."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Sequence

from l2l.search_spaces import Context, Decision, Result, SearchSpace, Spec


class Flaky(SearchSpace):
    """Reward from the choice; choice 'boom' raises, 'nan' returns NaN, 'bad' returns no Result."""

    name = "flaky"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", ["good", "boom", "nan", "bad", "ok"])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        x = spec["x"]
        if x == "boom":
            raise RuntimeError("child exploded on purpose")
        if x == "nan":
            return Result(reward=float("nan"))
        if x == "bad":
            return None  # type: ignore[return-value]
        return Result(reward=1.0 if x == "good" else 0.5, val_acc=1.0 if x == "good" else 0.5, val_loss=0.1)


class Interrupted(SearchSpace):
    """Its first child is interrupted (Ctrl-C in the driver, as the local executor runs children there)."""

    name = "interrupted"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", ["a", "b"])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        raise KeyboardInterrupt


class Broken(Interrupted):
    """Every child raises."""

    name = "broken"

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        raise RuntimeError("broken on purpose")


class Slow(SearchSpace):
    """Takes ``delay`` seconds per child; used to kill a search mid-way."""

    name = "slow"

    def __init__(self, delay: float = 0.2) -> None:
        super().__init__(delay=delay)
        self.delay = delay

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("a", ["0", "1", "2"]), Decision.categorical("b", ["0", "1", "2"])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        time.sleep(self.delay)
        marker = os.environ.get("L2L_TEST_MARKER")
        if marker:
            with open(marker, "a") as fh:
                fh.write(f"{ctx.child}\n")
        score = (int(str(spec["a"])) + int(str(spec["b"]))) / 4
        return Result(reward=score, val_acc=score)


class Unseeded(Slow):
    """Ignores the child's seed: the same spec and seed give another reward each time (fails the contract)."""

    name = "unseeded"

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=random.random())


class Forgetful(SearchSpace):
    """Takes an option but keeps none in `options`: a worker would rebuild another space (fails the contract)."""

    name = "forgetful"

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.width = width

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("a", [str(i) for i in range(self.width)])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=0.0)


class Empty(SearchSpace):
    name = "empty"

    def decisions(self) -> Sequence[Decision]:
        return []

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=0.0)


class Duplicate(Empty):
    name = "duplicate"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("a", ["x", "y"]), Decision.categorical("a", ["z"])]


class Lossy(Empty):
    """decode forgets the second decision: it does not round-trip."""

    name = "lossy"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("a", ["x", "y"]), Decision.categorical("b", ["p", "q"])]

    def decode(self, tokens: Sequence[int]) -> Spec:
        return Spec(self.name, (("a", "x" if tokens[0] == 0 else "y"), ("b", "p")))


class DecodeRaises(Lossy):
    """decode is broken: it raises on every sequence (the space has neither forbidden combinations nor a
    canonical form, so its error must not be blamed on them)."""

    name = "decode_raises"

    def decode(self, tokens: Sequence[int]) -> Spec:
        raise ValueError("my decode is broken")


class BadAnchor(Empty):
    name = "bad_anchor"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("a", ["x", "y"]), Decision.anchor("skip", 2)]


class NoName(Empty):
    name = ""


class NotASpace:
    name = "nope"


class Crashy(SearchSpace):
    """For executors: 'exit' kills the worker process, 'hang' sleeps for a minute, others sleep ``delay``.

    `shared_data` counts its calls on the driver; children report the token they received.
    """

    name = "crashy"

    def __init__(self, delay: float = 0.3) -> None:
        super().__init__(delay=delay)
        self.delay = delay
        self.shared_calls = 0
        self.received: str | None = None
        self.uses = 0  # how many times this copy of the space was given the shared data
        self.loaded_at = 0.0  # when it was last given them

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", ["ok", "exit", "hang", "fine"])]

    def shared_data(self) -> dict[str, object]:
        self.shared_calls += 1
        return {"token": "shipped-once"}

    def use_shared_data(self, data: object) -> None:
        self.received = data["token"]  # type: ignore[index]
        self.uses += 1
        self.loaded_at = time.time()

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        if spec["x"] == "exit":
            os._exit(1)
        time.sleep(60 if spec["x"] == "hang" else self.delay)
        info = {"pid": os.getpid(), "token": self.received, "uses": self.uses, "loaded": self.loaded_at}
        info["device"] = ctx.device
        info["torch_loaded"] = "torch" in sys.modules  # a space without torch: its worker need not load it
        return Result(reward=1.0, val_acc=1.0, info=info)


class EnvProbe(SearchSpace):
    """For executors: a child reports the environment it runs in, its own and its parent process's."""

    name = "env_probe"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", ["a"])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        try:
            with open(f"/proc/{os.getppid()}/environ", "rb") as f:
                parent = f.read().decode(errors="replace")
        except OSError:
            parent = ""
        return Result(reward=1.0, info={"environ": dict(os.environ), "parent_environ": parent})


class Sleepy(SearchSpace):
    """For executors: every child sleeps ``delay`` seconds and succeeds."""

    name = "sleepy"

    def __init__(self, delay: float = 1.0) -> None:
        super().__init__(delay=delay)
        self.delay = delay

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", ["a", "b"])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        time.sleep(self.delay)
        return Result(reward=1.0 if spec["x"] == "a" else 0.5)


class NoisySlow(Slow):
    """`Slow` whose reward carries Gaussian noise of sd ``noise``, drawn from the child's seed (as training is)."""

    name = "noisy_slow"

    def __init__(self, delay: float = 0.2, noise: float = 0.2) -> None:
        super().__init__(delay=delay)
        self.options["noise"] = noise
        self.noise = noise

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        result = super().evaluate(spec, ctx)
        score = float(result.reward) + random.Random(ctx.seed).gauss(0.0, self.noise)
        return Result(reward=score, val_acc=score)


class Twins(SearchSpace):
    """Sequences in pairs that are one candidate: ``echo`` changes the tokens, not the identity (as an operand
    nobody reads changes a rule, not its update). 24 token sequences, 12 identities; reward from the rest."""

    name = "twins"

    def decisions(self) -> Sequence[Decision]:
        return [
            Decision.categorical("a", [0, 1, 2, 3]),
            Decision.categorical("echo", ["x", "y"]),
            Decision.categorical("b", [0, 1, 2]),
        ]

    def identity(self, spec: Spec) -> str | None:
        return f"{spec['a']}-{spec['b']}"

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        a, b = spec["a"], spec["b"]
        assert isinstance(a, int) and isinstance(b, int)
        score = (a * 3 + b + random.Random(ctx.seed).random()) / 12
        return Result(reward=score, val_acc=score, val_loss=1.0 - score)
