"""Shared weights (ENAS): one store of parameters from which the network of any architecture is bound.

A space builds the stand-alone child of an architecture as usual; `SharedWeights.model` then replaces
each of the child's parameters and buffers by the shared tensor of the same *key*. The key names what
a weight is in the space (``"cell 2, edge 3, nor_conv_3x3, conv weight"``), not where the child module
keeps it, so every architecture that places the same op at the same position trains and reads the same
tensor, as in ENAS's one module holding every op. A key seen for the first time adopts the freshly
built child's tensor: the shared store grows as the search meets ops it had not met.

Because the bound network *is* the stand-alone child with other tensors in it, the subgraph an
architecture runs in the shared network computes exactly what its stand-alone child computes with
the same weights. The key must therefore tell apart every weight that means something different
(two ops whose batch norms have the same shape, the same op at stride 1 and 2); `SharedWeights`
refuses a key bound to tensors of two shapes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import torch
from torch import nn

Keyer = Callable[[str, tuple[int, ...]], str]
"""The key of the child's parameter or buffer ``name`` of ``shape``, for one architecture."""


class SharingError(ValueError):
    """Two weights under one key disagree, or a saved store does not fit."""


def shape_key(name: str, shape: tuple[int, ...]) -> str:
    """The weakest key: the child's own name and the shape. Shares a weight between architectures whose
    children keep it at the same place with the same shape, whatever op it belongs to."""
    return f"{name}|{'x'.join(str(s) for s in shape)}"


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


class SharedWeights(nn.Module):
    """Every weight any architecture has used, by key; `model` binds an architecture's network to them.

    ``build(arch)`` makes the stand-alone child (fresh weights); ``keyer(arch)`` its key function.
    Bound networks are cached (``cache`` most recent architectures); they hold the shared tensors, so
    an optimizer step on `parameters` is seen by all of them.
    """

    def __init__(
        self,
        build: Callable[[Any], nn.Module],
        keyer: Callable[[Any], Keyer],
        device: str | torch.device = "cpu",
        cache: int = 64,
    ) -> None:
        super().__init__()
        self._build, self._keyer = build, keyer
        self.device = torch.device(device)
        self.weights = nn.ParameterDict()
        self.stats: dict[str, torch.Tensor] = {}  # buffers (batch-norm statistics), by key
        self._names: dict[str, str] = {}  # key -> the ParameterDict's name for it
        self._cache: OrderedDict[Hashable, nn.Module] = OrderedDict()
        self._cache_size = cache
        self.new_parameters: list[nn.Parameter] = []  # adopted since the caller last took them

    def __len__(self) -> int:
        return len(self._names)

    def keys_of(self, arch: Hashable) -> list[str]:
        """The keys of the parameters ``arch``'s network uses, in its parameter order."""
        model = self.model(arch)
        key = self._keyer(arch)
        return [key(name, tuple(p.shape)) for name, p in model.named_parameters()]

    def model(self, arch: Hashable) -> nn.Module:
        """The network of ``arch`` bound to the shared weights (built on first use, then cached)."""
        model = self._cache.get(arch)
        if model is not None:
            self._cache.move_to_end(arch)
            return model
        model = self._build(arch).to(self.device)
        key = self._keyer(arch)
        for name, param in list(model.named_parameters()):
            owner, leaf = _owner(model, name)
            setattr(owner, leaf, self._shared_parameter(key(name, tuple(param.shape)), param))
        for name, buf in list(model.named_buffers()):
            if buf is None:
                continue
            owner, leaf = _owner(model, name)
            owner._buffers[leaf] = self._shared_buffer(key(name, tuple(buf.shape)), buf)
        self._cache[arch] = model
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return model

    def _shared_parameter(self, key: str, fresh: nn.Parameter) -> nn.Parameter:
        name = self._names.get(key)
        if name is None:
            name = f"w{len(self._names)}"
            self._names[key] = name
            self.weights[name] = fresh
            self.new_parameters.append(fresh)
            return fresh
        shared = self.weights[name]
        if shared.shape != fresh.shape:
            raise SharingError(
                f"shared weight {key!r} has shape {tuple(shared.shape)} but an architecture needs "
                f"{tuple(fresh.shape)}; the space's key must tell the two apart"
            )
        return shared  # type: ignore[no-any-return]

    def _shared_buffer(self, key: str, fresh: torch.Tensor) -> torch.Tensor:
        shared = self.stats.get(key)
        if shared is None:
            self.stats[key] = fresh
            return fresh
        if shared.shape != fresh.shape:
            raise SharingError(f"shared buffer {key!r} has shape {tuple(shared.shape)}, not {tuple(fresh.shape)}")
        return shared

    def take_new_parameters(self) -> list[nn.Parameter]:
        """The parameters adopted since the last call (for the optimizer to add), in adoption order."""
        new, self.new_parameters = self.new_parameters, []
        return new

    def ordered_parameters(self) -> Iterator[nn.Parameter]:
        """Every shared parameter, in the order keys were first met (what an optimizer's state indexes)."""
        for name in self._names.values():
            yield self.weights[name]

    def export(self, arch: Hashable) -> dict[str, torch.Tensor]:
        """A state dict for ``arch``'s stand-alone child holding the shared weights (copies)."""
        model = self.model(arch)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def store_state(self) -> dict[str, Any]:
        """Keys in order, with their tensors (for a checkpoint)."""
        return {
            "keys": list(self._names),
            "weights": [self.weights[n].detach().cpu() for n in self._names.values()],
            "stats": {k: v.detach().cpu() for k, v in self.stats.items()},
        }

    def load_store_state(self, state: dict[str, Any]) -> None:
        """Restore `store_state` into an empty store; bound networks are rebuilt on next use."""
        if self._names:
            raise SharingError("load_store_state needs an empty store")
        keys, weights = list(state["keys"]), list(state["weights"])
        if len(keys) != len(weights):
            raise SharingError(f"saved shared weights hold {len(keys)} keys but {len(weights)} tensors")
        for key, tensor in zip(keys, weights, strict=True):
            name = f"w{len(self._names)}"
            self._names[key] = name
            self.weights[name] = nn.Parameter(tensor.to(self.device))
        self.stats = {k: v.to(self.device) for k, v in dict(state["stats"]).items()}
        self._cache.clear()
        self.new_parameters = []
