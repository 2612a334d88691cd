"""Word-level language modelling on the packaged Shakespeare corpus, with an exchangeable output layer.

Words are lower-cased runs of letters and apostrophes (188,005 tokens, 12,608 distinct). The stream is
split by position (90% train, 5% validation, 5% test); the vocabulary is the training split's 11,919
words plus ``<unk>`` for the others (8.6% of the test words). The model is an embedding (sparse
gradient), one LSTM layer and an `l2l.nas.slide.OutputLayer` over the vocabulary: dense, SLIDE or
sampled softmax in training, always the full softmax in evaluation, so perplexities compare.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from l2l.nas.charlm import CORPUS, detach, streams
from l2l.nas.slide import OutputLayer, SparseDenseAdam
from l2l.nas.train import ChildDiverged

UNK = "<unk>"


@dataclass(frozen=True)
class WordCorpus:
    """The corpus as word ids, split by position, with the training split's vocabulary."""

    vocab: tuple[str, ...]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    def counts(self) -> torch.Tensor:
        """How often each word occurs in training (what frequency-based negatives sample from)."""
        return torch.bincount(self.train, minlength=self.n_vocab)


@lru_cache(maxsize=2)
def load_words(val_fraction: float = 0.05, test_fraction: float = 0.05) -> WordCorpus:
    """Read and split the packaged corpus; words of validation and test unseen in training become ``<unk>``."""
    words = re.findall(r"[a-z']+", CORPUS.read_text(encoding="ascii").lower())
    n = len(words)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    n_train = n - n_val - n_test
    by_count = Counter(words[:n_train]).most_common()
    vocab = (*(w for w, _ in by_count), UNK)
    table = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([table.get(w, len(vocab) - 1) for w in words], dtype=torch.long)
    return WordCorpus(vocab, ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :])


class WordLM(nn.Module):
    """Embedding -> LSTM -> dropout -> output layer (``hidden`` gives the vectors the output layer scores)."""

    def __init__(self, n_vocab: int, embed: int, hidden: int, output: OutputLayer, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_vocab, embed, sparse=True)
        self.rnn = nn.LSTM(embed, hidden)
        self.drop = nn.Dropout(dropout)
        self.output = output
        self.hidden_size = hidden

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(1, batch, self.hidden_size)
        return h, h.clone()

    def hidden(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """The vectors scored for each position of ``x`` (T, B), flattened to (T * B, hidden), and the state."""
        out, state = self.rnn(self.drop(self.embed(x)), state)
        return self.drop(out).reshape(-1, self.hidden_size), state

    def body_macs(self) -> int:
        """Multiply-adds per word before the output layer (the LSTM's four gates)."""
        return 4 * self.hidden_size * (self.rnn.input_size + self.hidden_size)


@torch.no_grad()
def perplexity(model: WordLM, data: torch.Tensor, batch: int = 16, bptt: int = 64) -> float:
    """Per-word perplexity of ``data`` under the full softmax (state carried along each stream)."""
    model.eval()
    cols = streams(data, batch)
    state = model.initial_state(batch)
    total, count = 0.0, 0
    for start in range(0, len(cols) - 1, bptt):
        y = cols[start + 1 : start + 1 + bptt]
        h, state = model.hidden(cols[start : start + len(y)], state)
        total += float(F.cross_entropy(model.output.logits(h), y.reshape(-1), reduction="sum"))
        count += y.numel()
    model.train()
    return math.exp(total / count)


@dataclass(frozen=True)
class WordLMConfig:
    """A training budget: ``epochs`` passes of ``batch_size`` streams read ``bptt`` words at a time."""

    epochs: int = 2
    batch_size: int = 32
    bptt: int = 20
    lr: float = 3e-3
    clip: float = 1.0
    max_steps: int = 0  # > 0: stop each epoch after this many updates (quick settings)


def train_epoch(model: WordLM, corpus: WordCorpus, optimizer: SparseDenseAdam, config: WordLMConfig) -> float:
    """One pass over the training streams with truncated backpropagation; returns its wall time in seconds.
    Raises `ChildDiverged` on a non-finite loss."""
    cols = streams(corpus.train, config.batch_size)
    state = model.initial_state(config.batch_size)
    model.train()
    starts = range(0, len(cols) - 1 - config.bptt, config.bptt)
    if not starts:
        raise ValueError(
            f"{len(corpus.train)} training words make no update of {config.batch_size} streams x {config.bptt} words"
        )
    started = time.perf_counter()
    for step, start in enumerate(starts):
        if config.max_steps and step >= config.max_steps:
            break
        state = detach(state)
        h, state = model.hidden(cols[start : start + config.bptt], state)
        loss = model.output.loss(h, cols[start + 1 : start + 1 + config.bptt].reshape(-1))
        value = loss.item()
        if not math.isfinite(value):
            raise ChildDiverged(f"loss became {value} at step {step}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.clip_grad_norm(config.clip)
        optimizer.step()
    return time.perf_counter() - started
