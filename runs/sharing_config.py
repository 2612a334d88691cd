"""The settings of a weight-sharing search (`l2l search --weight-sharing -W KEY=VALUE`), checked on entry."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from l2l.runs.search_config import SearchError
from l2l.search_spaces import SearchSpace, SpaceError
from l2l.search_spaces.sharing import SharedNetwork, check_coverage
from l2l.search_spaces.typed import OptionTypeError, coerce_fields

if TYPE_CHECKING:
    import torch

SAMPLERS = ("controller", "uniform", "fair")
BLOWUP = 10.0  # a training loss this many times the epoch's mean so far is a diverging architecture's: skipped
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
SCORES = ("auto", "loss", "reward")


@dataclass(frozen=True)
class SharingConfig:
    """Settings of a weight-sharing search (``-W KEY=VALUE``)."""

    epochs: int = 10
    warmup: int = 1  # first epochs in which the controller waits (sampler=controller: they train uniformly)
    steps: int = 0  # training batches per epoch, at most one pass over the training split; 0: one whole pass
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.0  # 0: the space's own ``lr`` option (or 0.003)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    # the shared weights' learning rate over the epochs: constant, or cosine (epoch e of E trains at
    # lr * (1 + cos(pi * e / E)) / 2, from lr down towards 0, as ENAS anneals its shared weights)
    schedule: str = "constant"
    controller_steps: int = 10  # controller updates per epoch, each on the run's --batch architectures
    val_batch: int = 256  # validation examples (or windows) behind one reward
    derive: int = 100  # architectures sampled at the end, each scored on the whole validation split
    # what draws the architectures the shared weights train through: uniform (each batch its own), fair (groups of
    # consecutive batches whose architectures use every choice of every decision equally often, their mean gradient
    # one step: FairNAS's strict fairness), or controller (ENAS proper, after `warmup` uniform epochs). Not the
    # controller's by default: weights trained through its own choices collapse to parameter-free cells
    # (benchmarks/README.md)
    sampler: str = "uniform"
    # what scores an architecture with the shared weights (the controller's reward, the derive's pick): the
    # space's reward, or its validation loss as exp(-val_loss) (in (0, 1]: the geometric mean probability of the
    # right answer), which ranks the nb201_cell sample better than accuracy (benchmarks/README.md); auto: the
    # loss where the shared network reports one (classifiers), else the reward (a language model's bpc is one)
    score: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_batch", "derive"):
            if getattr(self, name) < 1:
                raise SearchError(f"weight sharing: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "steps", "controller_steps"):
            if getattr(self, name) < 0:
                raise SearchError(f"weight sharing: {name} must be >= 0, got {getattr(self, name)}")
        if self.controller_steps and self.warmup >= self.epochs:
            raise SearchError(
                f"weight sharing: warmup ({self.warmup}) must be below epochs ({self.epochs}), or the controller "
                "never learns; lower -W warmup (or set -W controller_steps=0 to derive from the untrained controller)"
            )
        if self.sampler not in SAMPLERS:
            raise SearchError(f"weight sharing: unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise SearchError(f"weight sharing: unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.score not in SCORES:
            raise SearchError(f"weight sharing: unknown score {self.score!r}; known: {', '.join(SCORES)}")
        if self.schedule not in SCHEDULES:
            raise SearchError(f"weight sharing: unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if not (self.lr >= 0 and self.weight_decay >= 0 and math.isfinite(self.lr + self.weight_decay)) or not (
            0 < self.grad_clip < math.inf
        ):
            raise SearchError(
                f"weight sharing: lr and weight_decay must be finite and >= 0 and grad_clip > 0, got "
                f"{self.lr}, {self.weight_decay}, {self.grad_clip}"
            )
        if not 0 <= self.momentum < 1:  # Nesterov SGD's momentum: 1 or more never forgets, and diverges
            raise SearchError(f"weight sharing: momentum must be in [0, 1), got {self.momentum}")

    def epoch_lr(self, base: float, epoch: int) -> float:
        """The shared weights' learning rate in ``epoch`` (from 0), for a base rate ``base``."""
        if self.schedule == "cosine":
            return base * (1 + math.cos(math.pi * epoch / self.epochs)) / 2
        return base

    def scored(self, space: str, metrics: dict[str, float]) -> dict[str, float]:
        """``metrics`` of an architecture with its ``reward`` as ``score`` says (the space's own is kept as
        ``space_reward``); `SearchError` when the score needs a figure the space's shared network does not give."""
        if self.score == "reward":
            return metrics
        assert self.score != "auto", "resolve it first (resolved_score)"
        if "val_loss" not in metrics:
            raise SearchError(
                f"-W score=loss needs a val_loss from space {space!r}'s shared network; its measure() gives "
                f"{', '.join(sorted(metrics))}"
            )
        score = math.exp(-max(metrics["val_loss"], -700.0))  # (a loss below -700 would overflow: no such loss)
        return {**metrics, "space_reward": metrics["reward"], "reward": score}

    @staticmethod
    def from_settings(settings: Mapping[str, Any]) -> SharingConfig:
        known = {f.name for f in dataclasses.fields(SharingConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SearchError(f"unknown weight-sharing setting(s) {unknown}; known: {', '.join(sorted(known))}")
        try:
            return SharingConfig(**coerce_fields(SharingConfig, settings, "weight-sharing setting"))
        except OptionTypeError as exc:
            raise SearchError(str(exc)) from None


def checked_loss(space: str, loss: Any) -> torch.Tensor:
    """``loss`` as a shared network's loss() must give it: a scalar tensor that requires grad; else `SearchError`."""
    import torch

    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad:
        return loss
    got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
    raise SearchError(
        f"space {space!r}: its shared network's loss() returned {got}"
        + (" that does not require grad" if isinstance(loss, torch.Tensor) and loss.numel() == 1 else "")
        + "; expected a scalar tensor computed from the model's output (it trains the shared weights)"
    )


def check_strategy(strategy: str) -> None:
    """`SearchError` for a strategy a weight-sharing search cannot use: one wearing re-evaluation."""
    from l2l.controllers import parse_strategy

    if parse_strategy(strategy)[2]:
        raise SearchError(
            f"strategy {strategy!r}: re-evaluation repeats a child's training to average its noise; a "
            "weight-sharing search scores each architecture with weights that change every epoch, so it has "
            f"nothing to repeat: use {strategy.removesuffix('+reeval')!r}"
        )


def shared_network_of(space: SearchSpace) -> SharedNetwork:
    """The space's shared network, checked to cover every decision; a space without one is refused."""
    try:
        network = space.shared_network()
    except SpaceError:
        raise
    except Exception as exc:  # a plugin's shared network that cannot be made (an abstract method left out...)
        raise SearchError(f"space {space.name!r}: shared_network() failed: {type(exc).__name__}: {exc}") from exc
    if network is None:
        raise SearchError(
            f"space {space.name!r} offers no shared network, so it cannot be searched with --weight-sharing "
            "(built-in spaces that do: nb201_cell, micro, macro, rnn_cell)"
        )
    if not isinstance(network, SharedNetwork):
        raise SearchError(
            f"space {space.name!r}: shared_network() returned a {type(network).__name__}, not a SharedNetwork"
        )
    check_coverage(space, network)
    if not type(space).__module__.startswith("l2l."):  # a plugin's: what its methods raise is one line naming it
        for method in GUARDED:
            setattr(network, method, partial(_guarded, space.name, method, getattr(network, method)))
    return network


# the shared network's methods a weight-sharing search calls with data (a plugin's, guarded)
GUARDED = ("train_batches", "val_batch", "loss", "measure", "measure_split", "parameter_free")


def _guarded(space: str, method: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def failed(exc: Exception) -> SearchError:
        return SearchError(f"space {space!r}: its shared network's {method}() raised {type(exc).__name__}: {exc}")

    try:
        out = call(*args, **kwargs)
    except (SearchError, SpaceError):
        raise
    except Exception as exc:
        raise failed(exc) from exc
    if not isinstance(out, Iterator):
        return out

    def batches() -> Iterator[Any]:  # a generator's body runs as it is iterated: guarded there
        try:
            yield from out
        except (SearchError, SpaceError):
            raise
        except Exception as exc:
            raise failed(exc) from exc

    return batches()


def resolved_score(space: SearchSpace, network: SharedNetwork, ws: SharingConfig, seed: int) -> SharingConfig:
    """``ws`` with its score resolved (auto: loss or reward) from what ``network``'s measure() gives one
    architecture (the first tokens), built stand-alone apart from any shared weight; `SearchError` (before a run
    is recorded) when a score asked for needs a figure it does not give."""
    if ws.score == "reward":
        return ws
    import torch

    from l2l.search_spaces.api import token_sizes
    from l2l.search_spaces.sharing import plain_metrics

    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the search's random state as it was
        model = network.build(space.decode([0] * len(token_sizes(list(space.decisions())))), seed)
        if not isinstance(model, torch.nn.Module):  # a plugin's mistake: said as the search says it
            raise SearchError(f"space {space.name!r}: build() returned {type(model).__name__}, not a torch.nn.Module")
        model.eval()
        measured = network.measure(model, network.val_batch(min(ws.val_batch, 8), torch.Generator().manual_seed(0)))
    metrics = plain_metrics(space.name, measured)
    if ws.score == "auto":
        return dataclasses.replace(ws, score="loss" if "val_loss" in metrics else "reward")
    ws.scored(space.name, metrics)
    return ws
