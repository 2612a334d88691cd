"""What a space offers for weight sharing (`l2l search --weight-sharing`): its `SharedNetwork`.

A shared network says how to build the stand-alone child of a spec (the same network `evaluate`
trains), how to name each of its weights so that architectures placing the same op at the same place
share it (`key`), and how to train and score a network on batches of the space's data. The search
loop (`l2l.runs.weight_sharing`) keeps one store of weights (`l2l.nas.shared.SharedWeights`) and
binds each sampled architecture's network to it.

Two ready-made kinds cover the built-in spaces and most plugins: `ClassifierNetwork` (a dataset of
`l2l.nas.data`, cross-entropy, accuracy as the reward) and `LanguageModelNetwork` (the packaged
corpus, bits per character).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from l2l.search_spaces.api import SearchSpace, SpaceError, Spec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from l2l.nas.shared import Slot

__all__ = ["ClassifierNetwork", "LanguageModelNetwork", "SharedNetwork", "batch_statistics", "check_coverage", "op_key"]

Batch = tuple["torch.Tensor", ...]

# ops without weights: what "collapse" to skip connections and pools is measured in
PARAMETER_FREE = frozenset(
    {"none", "skip_connect", "identity", "avg_pool_3x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7"}
)


class SharedNetwork(ABC):
    """A space's offer of weight sharing. Subclasses set ``covers`` and implement the abstract methods.

    ``covers``: the names of the decisions the shared weights account for. Every decision of the space
    must be among them, or the search refuses to start, naming the decision left out.
    """

    covers: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def build(self, spec: Spec, seed: int) -> nn.Module:
        """The stand-alone child network of ``spec``, initialized from ``seed`` (the shared weights replace
        these, except the first time a key is met: the store adopts them)."""

    def sharing_builder(self) -> Callable[[Spec, int], nn.Module]:
        """What makes the network of a spec that the search binds to ONE store of shared weights (a new
        builder per store): `build` by default. A network may return a builder that assembles networks from
        the modules of architectures it built before (bound, they hold that store's tensors), which saves
        constructing and initializing a child per sampled architecture. What it assembles must have the
        parameter and buffer names and shapes `build` gives (`key` reads them), and an architecture that
        meets a weight for the first time must be built in full: the store adopts the new weight's values.
        Modules shared by several networks take the train/eval mode of the last one set (the search sets it
        before every forward), and a module whose weight is bound through a `Slot` cannot be shared (binding
        replaces its parameter by that architecture's slice)."""
        return self.build

    def key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> str | Slot:
        """What the weight the child keeps at ``name`` is, for ``spec``: weights with one key are one tensor.
        The default (the child's name and the shape) suits networks whose modules sit at places that name
        the op; override it to put the op in the key, or return a `l2l.nas.shared.Slot` to make the weight
        a part of a larger shared tensor (where an op's size varies between architectures)."""
        from l2l.nas.shared import shape_key

        return shape_key(name, shape)

    @abstractmethod
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of training batches, in an order drawn from ``generator``."""

    @abstractmethod
    def val_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch drawn from the validation split (never the training one): what one reward is measured on."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss of ``model`` on ``batch`` (to minimize)."""

    @abstractmethod
    def measure(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        """``{"reward": r, ...metrics}`` of ``model`` on a validation batch; ``r`` on the scale of the
        space's own `Result.reward` (higher is better)."""

    @abstractmethod
    def measure_split(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """As `measure`, on the whole validation split: how derived candidates are ranked."""

    def parameter_free(self, spec: Spec) -> float | None:
        """The share of ``spec``'s op choices that have no weights (skip connections, pools, none): what
        weight-sharing searches collapse to. An op choice is a decision whose options name ops of
        `l2l.nas.ops` (or `PARAMETER_FREE`). None for a space without them, and for one whose op decisions
        also offer ops this count does not know (a plugin's own: it overrides this method to count them)."""
        from l2l.nas.ops import OPS

        def known(option: object) -> bool:
            return isinstance(option, str) and (option in OPS or option in PARAMETER_FREE)

        ops = []
        for decision in self.space.decisions():
            if any(known(o) for o in decision.options):
                if not all(known(o) for o in decision.options):
                    return None  # a share of the ops it knows would be no share of the cell's
                ops.append(spec[decision.name])
        if not ops:
            return None
        return sum(v in PARAMETER_FREE for v in ops) / len(ops)


def op_key(name: str, shape: tuple[int, ...], place: str, op: str) -> str:
    """A key naming the op: ``place`` (where the op sits, e.g. ``"cell2.edge3"``) and ``op`` with the
    child's name and shape, so two ops at one place never share a tensor."""
    return f"{place}:{op}:{name}|{'x'.join(str(s) for s in shape)}"


def covered(space: SearchSpace, covers: Iterable[str]) -> tuple[str, ...]:
    """``covers`` as a tuple of decision names; a string ("act,width") would be read letter by letter."""
    names = () if isinstance(covers, str) else tuple(covers)  # read once: a generator is taken as it comes
    if isinstance(covers, str) or not all(isinstance(n, str) for n in names):
        raise SpaceError(
            f"space {space.name!r}: its shared network's covers must be a sequence of decision names, got {covers!r}"
        )
    return names


def check_coverage(space: SearchSpace, network: SharedNetwork) -> None:
    """Refuse a shared network that leaves out one of the space's decisions, naming it."""
    names = set(covered(space, network.covers))
    for decision in space.decisions():
        if decision.name not in names:
            raise SpaceError(
                f"space {space.name!r}: its shared network does not cover decision {decision.name!r} "
                f"(it covers {', '.join(network.covers) or 'nothing'})"
            )


def names_and_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The parameters' and buffers' names and shapes of ``model``: what `SharedNetwork.key` reads."""
    tensors = [*model.named_parameters(), *((n, b) for n, b in model.named_buffers() if b is not None)]
    return [(name, tuple(t.shape)) for name, t in tensors if not name.startswith("shared_slots.")]


CHECKED_BUILDS = frozenset({2, 10, 50, 250})  # which calls of a network's own builder the search checks


def checked_builder(space: SearchSpace, network: SharedNetwork) -> Callable[[Spec, int], nn.Module]:
    """``network``'s sharing builder, its output at a few calls (`CHECKED_BUILDS`, after the first: a builder
    builds in full what it has not met) compared with the stand-alone child's names and shapes: a builder that
    assembles the wrong network would otherwise give every architecture the same scores, silently."""
    build = network.sharing_builder()
    if build == network.build:
        return build
    calls = 0

    def checked(spec: Spec, seed: int) -> nn.Module:
        nonlocal calls
        calls += 1
        model = build(spec, seed)
        if calls in CHECKED_BUILDS and hasattr(model, "named_parameters"):
            import torch

            with torch.random.fork_rng(devices=[]):  # the search's random state as it was (resumed runs alike)
                child = network.build(spec, seed)
            got, want = sorted(names_and_shapes(model)), sorted(names_and_shapes(child))
            if got != want:
                first = next((f"{g} against {w}" for g, w in zip(got, want, strict=False) if g != w), None)
                raise SpaceError(
                    f"space {space.name!r}, {space.describe(spec)}: its shared network's sharing_builder() made a "
                    f"network whose weights are not the stand-alone child's "
                    f"({first or f'{len(got)} tensors against {len(want)}'})"
                )
        return model

    return checked


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Score with each batch norm using the statistics of the batch it sees, the running statistics left
    as they are: the running ones mix every architecture that trained through the shared weights, so an
    architecture is scored with statistics of its own (recomputed per architecture). Dropout is off."""
    from torch import nn

    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)


class ClassifierNetwork(SharedNetwork):
    """Weight sharing for a classifier on a dataset of `l2l.nas.data`: cross-entropy, reward = accuracy."""

    def __init__(
        self,
        space: SearchSpace,
        dataset: str,
        build: Callable[[Spec, int], nn.Module],
        key: Callable[[Spec, str, tuple[int, ...]], str | Slot] | None,
        covers: Sequence[str],
        sharing_builder: Callable[[], Callable[[Spec, int], nn.Module]] | None = None,
    ) -> None:
        super().__init__(space)
        from l2l.nas.data import load_dataset

        self.data = load_dataset(dataset)
        self._build, self._key, self._sharing_builder = build, key, sharing_builder
        self.covers = covered(space, covers)

    def build(self, spec: Spec, seed: int) -> nn.Module:
        return self._build(spec, seed)

    def sharing_builder(self) -> Callable[[Spec, int], nn.Module]:
        return self._sharing_builder() if self._sharing_builder is not None else self.build

    def key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> str | Slot:
        return self._key(spec, name, shape) if self._key is not None else super().key(spec, name, shape)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        import torch

        train = self.data.train
        perm = torch.randperm(len(train), generator=generator)
        batch_size = min(batch_size, len(perm))  # a batch larger than the split: the whole split, not no step
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            yield train.x[idx], train.y[idx]

    def val_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        import torch

        val = self.data.val
        idx = torch.randint(0, len(val), (min(batch_size, len(val)),), generator=generator)
        return val.x[idx], val.y[idx]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        from torch import nn

        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def measure(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        import torch
        from torch import nn

        x, y = batch
        with torch.no_grad(), batch_statistics(model):
            logits = model(x)
        acc = float((logits.argmax(1) == y).float().mean())
        return {"reward": acc, "val_acc": acc, "val_loss": float(nn.functional.cross_entropy(logits, y))}

    def measure_split(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        import torch
        from torch import nn

        val = self.data.val
        loss, correct = 0.0, 0
        chunks = -(-len(val) // 512)  # near-equal chunks of at most 512: none so small its batch statistics fail
        with torch.no_grad(), batch_statistics(model):
            for xs, ys in zip(val.x.tensor_split(chunks), val.y.tensor_split(chunks), strict=True):
                x, y = xs.to(device), ys.to(device)
                logits = model(x)
                loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        acc = correct / len(val)
        return {"reward": acc, "val_acc": acc, "val_loss": loss / len(val)}


class LanguageModelNetwork(SharedNetwork):
    """Weight sharing for a character language model on the packaged corpus: windows of ``bptt``
    characters from a zero state; the reward is the space's (``reward_of(bits per character)``)."""

    def __init__(
        self,
        space: SearchSpace,
        build: Callable[[Spec, int], nn.Module],
        key: Callable[[Spec, str, tuple[int, ...]], str | Slot] | None,
        covers: Sequence[str],
        bptt: int,
        reward_of: Callable[[float], float],
    ) -> None:
        super().__init__(space)
        from l2l.nas.charlm import load_corpus

        self.corpus = load_corpus()
        self._build, self._key, self.covers = build, key, covered(space, covers)
        self.bptt, self.reward_of = bptt, reward_of

    def build(self, spec: Spec, seed: int) -> nn.Module:
        return self._build(spec, seed)

    def key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> str | Slot:
        return self._key(spec, name, shape) if self._key is not None else super().key(spec, name, shape)

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        import torch

        idx = starts[None, :] + torch.arange(self.bptt + 1)[:, None]  # (T + 1, B)
        text = data[idx]
        return text[:-1], text[1:]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        import torch

        data = self.corpus.train
        steps = max(1, len(data) // (batch_size * self.bptt))
        for _ in range(steps):
            starts = torch.randint(0, len(data) - self.bptt - 1, (batch_size,), generator=generator)
            yield self._windows(data, starts)

    def val_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        import torch

        data = self.corpus.val
        starts = torch.randint(0, len(data) - self.bptt - 1, (batch_size,), generator=generator)
        return self._windows(data, starts)

    def _nats(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        from torch import nn

        x, y = batch
        logits, _ = model(x, model.initial_state(x.shape[1], x.device))  # type: ignore[operator]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self._nats(model, batch)

    def measure(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        import torch

        model.eval()
        with torch.no_grad():
            bpc = float(self._nats(model, batch)) / math.log(2)
        return self._scored(bpc)

    def _scored(self, bpc: float) -> dict[str, float]:
        """The reward of ``bpc``; a state that exploded (far above a uniform guess, as a stand-alone child fails
        for) scores as not finite, which the search takes for a diverged architecture, not a huge finite reward."""
        from l2l.nas.charlm import EXPLODED

        if not math.isfinite(bpc) or bpc > EXPLODED * math.log2(self.corpus.n_vocab):
            return {"reward": math.nan, "val_bpc": math.inf}
        return {"reward": self.reward_of(bpc), "val_bpc": bpc}

    def parameter_free(self, spec: Spec) -> float | None:
        return None  # a recurrent cell's choices are activations, not ops with or without weights

    def measure_split(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from l2l.nas.charlm import bits_per_char

        return self._scored(bits_per_char(model, self.corpus.val, device))  # type: ignore[arg-type]


def plain_metrics(space: str, measured: Any) -> dict[str, float]:
    """What a shared network's ``measure``/``measure_split`` returned, as plain floats (a 0-d tensor is taken
    as its value); anything else, or no ``reward``, is refused in one line naming the space."""
    from l2l.search_spaces.results import ResultError, as_number

    where = f"space {space!r}: its shared network's measure()"
    if not isinstance(measured, Mapping):
        raise SpaceError(f"{where} returned {type(measured).__name__}; expected a dict of numbers with a 'reward'")
    out: dict[str, float] = {}
    for key, value in measured.items():
        try:  # a flag (True) counts as 1, as it did when these went to the store as they came
            out[str(key)] = cast(float, as_number(where, float(value) if isinstance(value, bool) else value, False))
        except ResultError:
            raise SpaceError(f"{where} returned {key!r}: {type(value).__name__}; expected a number") from None
    if "reward" not in out:
        raise SpaceError(f"{where} returned no 'reward' (its keys: {', '.join(map(str, out)) or 'none'})")
    return out
