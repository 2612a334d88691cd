"""The data of the optimizer task suite: fixed train / validation / test splits of every kind a task reads.

Each problem is built once per process from data that needs no network (scikit-learn's digits and
generators, MNIST-1D generated offline, the packaged Shakespeare corpus) and cut the same way on every
machine. Inputs and targets are tensors indexed by example: class labels (long), regression targets and
reconstructions (float), next-character sequences (long, one target per position).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from l2l.nas.data import Split, load_dataset


class ProblemError(ValueError):
    """A task names a problem that does not exist."""


@dataclass(frozen=True)
class Problem:
    """Three fixed splits and what a model needs to know about them."""

    name: str
    train: Split
    val: Split
    test: Split
    n_in: int  # features per example (characters per window for sequences)
    n_out: int  # classes, regression outputs, reconstructed features or vocabulary size


def _classification(name: str) -> Problem:
    data = load_dataset(name)
    n_in = int(torch.tensor(data.input_shape).prod())
    return Problem(name, data.train, data.val, data.test, n_in, data.n_classes)


def _autoencoder() -> Problem:
    data = load_dataset("digits")
    train, val, test = (Split(s.x, s.x.clone()) for s in (data.train, data.val, data.test))
    return Problem("digits-reconstruction", train, val, test, n_in=64, n_out=64)


def _friedman() -> Problem:
    """Friedman's regression problem #1 (10 features, 5 informative, noise 1), standardized on train."""
    from sklearn.datasets import make_friedman1

    x_np, y_np = make_friedman1(n_samples=3000, n_features=10, noise=1.0, random_state=0)
    x = torch.tensor(x_np, dtype=torch.float32)
    y = torch.tensor(y_np, dtype=torch.float32).unsqueeze(1)
    tr, va, te = slice(0, 2000), slice(2000, 2500), slice(2500, 3000)
    xm, xs = x[tr].mean(0), x[tr].std(0)
    ym, ys = y[tr].mean(0), y[tr].std(0)
    x, y = (x - xm) / xs, (y - ym) / ys
    return Problem("friedman", Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]), n_in=10, n_out=1)


WINDOW = 64  # characters a language model reads per example


def _windows(stream: torch.Tensor, n: int, seed: int | None) -> Split:
    """``n`` windows of WINDOW + 1 characters: random offsets (seeded) or, with seed None, evenly spaced."""
    last = len(stream) - WINDOW - 1
    if seed is None:
        starts = torch.linspace(0, last, n).long()
    else:
        starts = torch.randint(0, last, (n,), generator=torch.Generator().manual_seed(seed))
    idx = starts.unsqueeze(1) + torch.arange(WINDOW + 1)
    chunks = stream[idx]
    return Split(chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())


def _corpus() -> Problem:
    """The packaged Shakespeare corpus as windows: 20,000 random training windows, 256 evenly spaced
    validation and test windows from the corpus' own validation and test parts (nothing crosses them)."""
    from l2l.nas.charlm import load_corpus

    c = load_corpus()
    return Problem(
        "shakespeare",
        _windows(c.train, 20_000, seed=0),
        _windows(c.val, 256, None),
        _windows(c.test, 256, None),
        n_in=WINDOW,
        n_out=c.n_vocab,
    )


_BUILDERS = {
    "digits": lambda: _classification("digits"),
    "mnist1d": lambda: _classification("mnist1d"),
    "synthetic": lambda: _classification("synthetic"),
    "digits-reconstruction": _autoencoder,
    "friedman": _friedman,
    "shakespeare": _corpus,
}


def problem_names() -> list[str]:
    """Names `load_problem` accepts."""
    return sorted(_BUILDERS)


@lru_cache(maxsize=16)
def load_problem(name: str) -> Problem:
    """Build ``name`` once per process; the splits are the same on every machine and every call."""
    if name not in _BUILDERS:
        raise ProblemError(f"unknown problem {name!r}; known: {', '.join(problem_names())}")
    return _BUILDERS[name]()
