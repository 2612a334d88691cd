"""Offline datasets with fixed train/validation/test splits: validation drives rewards, test is only reported.

torch loads with a dataset, not with this module: a space checks a dataset's name without it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    import torch

    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_train = len(y) - n_val - n_test
    tr, va, te = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    mean, std = x[tr].mean(0, keepdim=True), x[tr].std(0, keepdim=True).clamp_min(1e-3)
    x = (x - mean) / std
    return Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te])


def _digits() -> Dataset:
    import torch
    from sklearn.datasets import load_digits  # ships its data inside the package: no download

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, val, test = _split(x, y, n_val=300, n_test=300, seed=0)
    return Dataset("digits", train, val, test, n_classes=10)


def _synthetic() -> Dataset:
    """A generated 10-class problem (40 features, 20 informative): a task no optimizer search has seen."""
    import torch
    from sklearn.datasets import make_classification

    x_np, y_np = make_classification(
        n_samples=3000,
        n_features=40,
        n_informative=20,
        n_redundant=10,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=1.5,
        random_state=0,
    )
    x = torch.tensor(x_np, dtype=torch.float32)
    y = torch.tensor(y_np, dtype=torch.long)
    train, val, test = _split(x, y, n_val=500, n_test=500, seed=0)
    return Dataset("synthetic", train, val, test, n_classes=10)


def _mnist1d() -> Dataset:
    """MNIST-1D: the published 4,000 training examples (the last 500 kept for validation) and 1,000 test."""
    import torch

    from l2l.nas.mnist1d import generate

    x_train, y_train, x_test, y_test = generate()
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    n_val = 500
    train = Split(x[:-n_val], y[:-n_val])
    val = Split(x[-n_val:], y[-n_val:])
    return Dataset("mnist1d", train, val, Split(torch.from_numpy(x_test), torch.from_numpy(y_test)), n_classes=10)


CIFAR_ROOT_ENV = "L2L_CIFAR10_ROOT"


def _cifar10() -> Dataset:
    """CIFAR-10 through torchvision, from files already on disk (never downloaded here): 45,000 train,
    5,000 validation (the end of the training files), 10,000 test."""
    import os

    try:
        from torchvision.datasets import CIFAR10
    except ImportError:
        raise DatasetError(
            "dataset 'cifar10' needs torchvision: pip install 'l2l[cifar]' (or torchvision), then put the "
            f"CIFAR-10 python files under ${CIFAR_ROOT_ENV}"
        ) from None
    root = os.environ.get(CIFAR_ROOT_ENV, os.path.expanduser("~/.cache/l2l/cifar10"))
    try:
        train_set = CIFAR10(root, train=True, download=False)
        test_set = CIFAR10(root, train=False, download=False)
    except RuntimeError as exc:
        raise DatasetError(
            f"CIFAR-10 is not under {root!r} ({exc}); download cifar-10-python.tar.gz, unpack it there or "
            f"point ${CIFAR_ROOT_ENV} at it"
        ) from None

    def tensors(ds: object) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        x = torch.tensor(ds.data, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0  # type: ignore[attr-defined]
        return x, torch.tensor(ds.targets, dtype=torch.long)  # type: ignore[attr-defined]

    x, y = tensors(train_set)
    x_test, y_test = tensors(test_set)
    mean, std = x[:45000].mean((0, 2, 3), keepdim=True), x[:45000].std((0, 2, 3), keepdim=True)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    return Dataset(
        "cifar10", Split(x[:45000], y[:45000]), Split(x[45000:], y[45000:]), Split(x_test, y_test), n_classes=10
    )


_LOADERS = {"digits": _digits, "synthetic": _synthetic, "mnist1d": _mnist1d, "cifar10": _cifar10}


_INSTALLED: dict[str, Dataset] = {}


def install(dataset: Dataset) -> None:
    """Make `load_dataset` return this copy (one a worker received from the driver) instead of building it."""
    _INSTALLED[dataset.name] = dataset


def load_dataset(name: str) -> Dataset:
    """Load ``name`` once per process; the split is the same on every machine and every call."""
    if name in _INSTALLED:
        return _INSTALLED[name]
    return _load(name)


@lru_cache(maxsize=8)
def _load(name: str) -> Dataset:
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]()


def dataset_names() -> list[str]:
    """Names `load_dataset` accepts."""
    return sorted(_LOADERS)
