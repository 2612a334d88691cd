"""Parts of shared tensors: a `Slot` names the part of a larger shared tensor that a child's weight is (the first
36 of 64 filters; the columns of the layers a layer reads), and the helpers `l2l.nas.shared.SharedWeights`
binds slots with: the slice a slot takes, the entries no slot takes, and a new shared tensor grown from the
first child that takes part of it."""

from __future__ import annotations

import math
import operator
import zlib
from dataclasses import dataclass
from typing import Any

import torch


class SharingError(ValueError):
    """Two weights under one key disagree, or a saved store does not fit."""


@dataclass(frozen=True)
class Slot:
    """The part of the shared tensor ``key`` (of ``shape``) that a child's weight is.

    ``index`` has one entry per dimension: an int ``n`` takes the first ``n`` entries along it, a tuple
    takes those positions in that order. A buffer (batch-norm statistics) may only take first entries, so
    that its slice is a view the running statistics update in place.
    """

    key: str
    shape: tuple[int, ...]
    index: tuple[int | tuple[int, ...], ...]

    def __post_init__(self) -> None:
        shape = tuple(count_of(self.key, "shape", n) for n in self.shape)
        if len(self.index) != len(shape):
            raise SharingError(f"slot of {self.key!r}: {len(self.index)} indices for a {len(shape)}-d tensor")
        index: list[int | tuple[int, ...]] = []
        for size, ix in zip(shape, self.index, strict=True):
            if isinstance(ix, (tuple, list)):
                picked = tuple(count_of(self.key, "index", i) for i in ix)
                if picked == tuple(range(len(picked))):  # the first entries, written as positions
                    ix = len(picked)
                else:
                    ix = picked
            else:
                ix = count_of(self.key, "index", ix)
            taken = range(ix) if isinstance(ix, int) else ix
            if not taken:
                raise SharingError(f"slot of {self.key!r} takes no entry of a dimension of {size}")
            if any(not 0 <= i < size for i in taken):
                raise SharingError(f"slot of {self.key!r}: index {ix} is outside a dimension of {size}")
            index.append(ix)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "index", tuple(index))

    @property
    def sliced_shape(self) -> tuple[int, ...]:
        return tuple(ix if isinstance(ix, int) else len(ix) for ix in self.index)

    @property
    def is_view(self) -> bool:
        """Whether the slice is a view (first entries only along every dimension)."""
        return all(isinstance(ix, int) for ix in self.index)


def count_of(key: str, what: str, value: Any) -> int:
    """``value`` as an int (numpy and 0-d torch integers too); a bool or anything else is refused."""
    if isinstance(value, bool):
        raise SharingError(f"slot of {key!r}: its {what} holds {value!r}, not an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise SharingError(f"slot of {key!r}: its {what} holds {value!r}, not an integer") from None


def take(tensor: torch.Tensor, index: tuple[int | torch.Tensor, ...]) -> torch.Tensor:
    """The slice (always a new tensor object: a view, or a copy where positions are picked)."""
    for dim, ix in enumerate(index):
        tensor = tensor.narrow(dim, 0, ix) if isinstance(ix, int) else tensor.index_select(dim, ix)
    return tensor


def unread(slots: list[Slot], shape: tuple[int, ...]) -> torch.Tensor:
    """The entries of a shared tensor of ``shape`` that none of ``slots`` takes (a boolean mask)."""
    read = torch.zeros(shape, dtype=torch.bool)
    for slot in slots:
        axes = [torch.arange(ix) if isinstance(ix, int) else torch.tensor(ix) for ix in slot.index]
        grid = tuple(a.view([-1 if d == dim else 1 for d in range(len(shape))]) for dim, a in enumerate(axes))
        read[grid] = True
    return ~read


def index_tensors(slot: Slot, device: torch.device) -> tuple[int | torch.Tensor, ...]:
    return tuple(ix if isinstance(ix, int) else torch.tensor(ix, device=device) for ix in slot.index)


def grown(slot: Slot, fresh: torch.Tensor) -> torch.Tensor:
    """A new shared tensor for ``slot``, from the first child that takes part of it: a constant one (a batch
    norm's scale or shift) filled with that constant; else uniform around the child's mean with the child's
    spread, scaled to the whole tensor's fan-in (what PyTorch's initializers scale by), from a generator
    seeded by the key."""
    generator = torch.Generator().manual_seed(zlib.crc32(slot.key.encode()))
    values = fresh.detach().float()
    mean = float(values.mean()) if values.numel() else 0.0
    spread = float(values.std()) * 3**0.5 if values.numel() > 1 else 0.0
    if len(slot.shape) > 1:  # (out, in, ...): the fan-in is all but the first dimension
        spread *= (values[0].numel() / (math.prod(slot.shape) // slot.shape[0])) ** 0.5
    full = (torch.rand(slot.shape, generator=generator) * 2 - 1) * spread + mean
    return full.to(dtype=fresh.dtype, device=fresh.device)
