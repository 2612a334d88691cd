"""Offline datasets with fixed train/validation/test splits: validation drives rewards, test is only reported."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


class DatasetError(ValueError):
    """A dataset name is unknown or the dataset cannot be loaded offline."""


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of one split."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A classification dataset with its three fixed splits."""

    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch dimension)."""
        return tuple(self.train.x.shape[1:])

    @property
    def chance(self) -> float:
        """Accuracy of guessing uniformly: the floor a hopeless child cannot beat."""
        return 1.0 / self.n_classes


def _split(x: torch.Tensor, y: torch.Tensor, n_val: int, n_test: int, seed: int) -> tuple[Split, Split, Split]:
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_train = len(y) - n_val - n_test
    tr, va, te = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    mean, std = x[tr].mean(0, keepdim=True), x[tr].std(0, keepdim=True).clamp_min(1e-3)
    x = (x - mean) / std
    return Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te])


def _digits() -> Dataset:
    from sklearn.datasets import load_digits  # ships its data inside the package: no download

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, val, test = _split(x, y, n_val=300, n_test=300, seed=0)
    return Dataset("digits", train, val, test, n_classes=10)


_LOADERS = {"digits": _digits}


@lru_cache(maxsize=8)
def load_dataset(name: str) -> Dataset:
    """Load ``name`` once per process; the split is the same on every machine and every call."""
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]()


def dataset_names() -> list[str]:
    """Names `load_dataset` accepts."""
    return sorted(_LOADERS)
