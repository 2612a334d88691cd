"""A generated extreme-classification task: 100,000 labels with power-law (Zipf) frequencies.

Each label has a prototype, a set of ``proto`` feature ids out of ``n_features``. An example of label y
is a bag of ``keep`` features drawn from y's prototype and ``noise`` features drawn uniformly: the
bag-of-words shape of real extreme-classification data (Amazon-670K, Delicious-200K). Labels are drawn
with probability proportional to ``1 / rank ** zipf`` (ranks shuffled over label ids), so a few labels
are common and most are rare. Everything comes from ``seed``. The model (`BagClassifier`) is fastText's:
the mean of the bag's feature embeddings, then an output layer over every label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from l2l.nas.slide import OutputLayer, SparseDenseAdam


@dataclass(frozen=True)
class Split:
    """Examples: ``features`` (n, bag) feature ids and ``labels`` (n,)."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ExtremeTask:
    """The splits, the number of labels and features, and each label's training count."""

    n_labels: int
    n_features: int
    train: Split
    val: Split
    test: Split

    def label_counts(self) -> torch.Tensor:
        """How often each label occurs in training (what frequency-based negatives sample from)."""
        return torch.bincount(self.train.labels, minlength=self.n_labels)


@lru_cache(maxsize=2)
def make_extreme(
    n_labels: int = 100_000,
    n_features: int = 10_000,
    n_train: int = 20_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    proto: int = 8,
    keep: int = 5,
    noise: int = 3,
    zipf: float = 1.0,
    seed: int = 0,
) -> ExtremeTask:
    """The task of these sizes drawn from ``seed`` (the same arguments give the same tensors)."""
    if not 0 < keep <= proto <= n_features or noise < 0 or min(n_labels, n_train, n_val, n_test) < 1:
        raise ValueError(
            f"extreme task needs 0 < keep <= proto <= n_features, noise >= 0 and sizes >= 1; got keep={keep}, "
            f"proto={proto}, n_features={n_features}, noise={noise}, sizes {n_labels}, {n_train}, {n_val}, {n_test}"
        )
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, n_features, (n_labels, proto), generator=gen)
    weights = 1.0 / torch.arange(1, n_labels + 1, dtype=torch.float64) ** zipf
    probs = weights[torch.argsort(torch.rand(n_labels, generator=gen))]  # which label has which rank
    n = n_train + n_val + n_test
    labels = torch.multinomial(probs, n, replacement=True, generator=gen)
    picks = torch.rand(n, proto, generator=gen).argsort(dim=1)[:, :keep]  # ``keep`` of the prototype's features
    kept = prototypes[labels].gather(1, picks)
    features = torch.cat([kept, torch.randint(0, n_features, (n, noise), generator=gen)], dim=1)
    cut = (n_train, n_train + n_val)
    return ExtremeTask(
        n_labels,
        n_features,
        Split(features[: cut[0]], labels[: cut[0]]),
        Split(features[cut[0] : cut[1]], labels[cut[0] : cut[1]]),
        Split(features[cut[1] :], labels[cut[1] :]),
    )


class BagClassifier(nn.Module):
    """Mean of the bag's feature embeddings (a sparse gradient), then ``output`` over every label."""

    def __init__(self, n_features: int, dim: int, output: OutputLayer) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(n_features, dim, mode="mean", sparse=True)
        self.output = output

    def hidden(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.bag(features))


@torch.no_grad()
def accuracy(model: BagClassifier, split: Split, batch: int = 512) -> float:
    """Top-1 accuracy over the full output layer."""
    model.eval()
    right = 0
    for i in range(0, len(split), batch):
        scores = model.output.logits(model.hidden(split.features[i : i + batch]))
        right += int((scores.argmax(1) == split.labels[i : i + batch]).sum())
    model.train()
    return right / len(split)


def train_epoch(model: BagClassifier, task: ExtremeTask, optimizer: SparseDenseAdam, batch: int, seed: int) -> float:
    """One pass over the training split in an order drawn from ``seed``; returns its wall time in seconds."""
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(seed))
    model.train()
    started = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        loss = model.output.loss(model.hidden(task.train.features[idx]), task.train.labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started
