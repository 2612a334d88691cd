"""Character-level language modelling on the packaged Shakespeare corpus, with truncated backpropagation.

The corpus (eight plays, about 1.0 MB of ASCII) is split by position: the first 90% trains, the next
5% validates, the last 5% tests. Nothing is shuffled across the split. A model reads characters and
predicts the next one; its quality is bits per character (cross-entropy in base 2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from l2l.nas.train import ChildDiverged

CORPUS = Path(__file__).parent / "corpus" / "shakespeare.txt"


@dataclass(frozen=True)
class Corpus:
    """The corpus as character ids, split by position."""

    vocab: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)


@lru_cache(maxsize=2)
def load_corpus(val_fraction: float = 0.05, test_fraction: float = 0.05) -> Corpus:
    """Read the packaged corpus; train is the start, validation the middle, test the end."""
    text = CORPUS.read_text(encoding="ascii")
    vocab = "".join(sorted(set(text)))
    table = {ch: i for i, ch in enumerate(vocab)}
    data = torch.tensor([table[ch] for ch in text], dtype=torch.long)
    n = len(data)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    n_train = n - n_val - n_test
    return Corpus(vocab, data[:n_train], data[n_train : n_train + n_val], data[n_train + n_val :])


def streams(data: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut ``data`` into ``batch`` contiguous streams, one per column: shape (length, batch)."""
    length = len(data) // batch
    return data[: length * batch].view(batch, length).t().contiguous()


class Recurrent(nn.Module):
    """What a language model's recurrent part is: ``(x (T, B, E), state) -> (out (T, B, H), state)``."""

    hidden: int

    def initial_state(self, batch: int, device: torch.device) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


class TorchRNN(Recurrent):
    """`nn.LSTM` or `nn.GRU` (one layer) as a `Recurrent`: the baselines."""

    def __init__(self, kind: str, inputs: int, hidden: int) -> None:
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"unknown baseline {kind!r}; known: lstm, gru")
        self.kind, self.hidden = kind, hidden
        self.rnn = nn.LSTM(inputs, hidden) if kind == "lstm" else nn.GRU(inputs, hidden)

    def initial_state(self, batch: int, device: torch.device) -> Any:
        h = torch.zeros(1, batch, self.hidden, device=device)
        return (h, h.clone()) if self.kind == "lstm" else h

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.rnn(x, state)  # type: ignore[no-any-return]


class CharLM(nn.Module):
    """Embedding -> recurrent part -> dropout -> linear decoder to the vocabulary."""

    def __init__(self, n_vocab: int, embed: int, rnn: Recurrent, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_vocab, embed)
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(rnn.hidden, n_vocab)

    def initial_state(self, batch: int, device: torch.device) -> Any:
        return self.rnn.initial_state(batch, device)

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        out, state = self.rnn(self.drop(self.embed(x)), state)
        return self.decoder(self.drop(out)), state


def detach(state: Any) -> Any:
    """Cut the graph at a truncation point, keeping the values."""
    if isinstance(state, tuple):
        return tuple(detach(s) for s in state)
    return state.detach()


@torch.no_grad()
def bits_per_char(model: CharLM, data: torch.Tensor, device: torch.device, batch: int = 64, bptt: int = 256) -> float:
    """Mean bits per character of ``model`` predicting ``data`` (state carried along each stream)."""
    model.eval()
    cols = streams(data, batch).to(device)
    state = model.initial_state(batch, device)
    total, count = 0.0, 0
    for start in range(0, len(cols) - 1, bptt):
        x = cols[start : start + bptt]
        y = cols[start + 1 : start + 1 + bptt]
        x = x[: len(y)]
        logits, state = model(x, state)
        total += float(
            nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        )
        count += y.numel()
    return total / count / math.log(2)


@dataclass(frozen=True)
class LMConfig:
    """A child's training budget: ``steps`` updates of ``batch_size`` streams x ``bptt`` characters."""

    steps: int = 300
    batch_size: int = 32
    bptt: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    evals: int = 3  # validation points on the curve (the last one is the result)
    stop_hopeless: bool = True  # stop at the first point when no better than uniform (a search's economy)


@dataclass
class LMOutcome:
    """Validation and test bits per character and the curves (one point per evaluation)."""

    val_bpc: float
    test_bpc: float
    curves: dict[str, list[float]] = field(default_factory=dict)
    train_time: float = 0.0
    stopped_early: str | None = None


EXPLODED = 10.0  # bits per character above this many times a uniform guess's: logits that large mean a blown-up state


def _check_finite(what: str, bpc: float, uniform: float, step: int) -> None:
    """Raise `ChildDiverged` where ``bpc`` is not finite or so far above a uniform guess that the state exploded
    (4e25 bits per character were recorded as a finished child)."""
    if not math.isfinite(bpc) or bpc > EXPLODED * uniform:
        limit = f"{EXPLODED:g} times a uniform guess's {uniform:.3f}"
        said = f"over {limit}" if math.isfinite(bpc) else f"not finite; the limit is {limit}"
        raise ChildDiverged(f"{what} bits per character became {bpc:.4g} at step {step} ({said}): the state exploded")


def _stop_reason(
    step: int,
    point: int,
    val: float,
    uniform: float,
    config: LMConfig,
    should_stop: Callable[[int, float], bool] | None,
) -> str | None:
    """Why training stops at evaluation ``point`` (after ``step`` updates), or None to go on."""
    if step >= config.steps:
        return None
    if point == 0 and config.stop_hopeless and val >= uniform:
        return f"after {step} steps validation {val:.3f} bits/char is no better than uniform ({uniform:.3f})"
    if should_stop is not None and should_stop(point, -val):
        return f"pruned after {step} steps (validation {val:.3f} bits/char)"
    return None


def train_lm(
    model: CharLM,
    corpus: Corpus,
    config: LMConfig,
    *,
    seed: int,
    device: str = "cpu",
    should_stop: Callable[[int, float], bool] | None = None,
) -> LMOutcome:
    """Train with Adam and truncated backpropagation through time for ``config.steps`` updates.

    The training text is cut into ``batch_size`` streams read ``bptt`` characters at a time, starting
    at an offset drawn from ``seed``; the hidden state carries across chunks (detached) and restarts
    when the streams wrap around. Raises `ChildDiverged` on a non-finite loss, or bits per character over
    `EXPLODED` times a uniform guess's. A model no better than
    a uniform guess at its first evaluation stops there. ``should_stop(point, -val_bpc)`` may prune.
    """
    dev = torch.device(device)
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    offset = int(torch.randint(0, len(corpus.train) // 2, (1,), generator=gen))
    cols = streams(torch.roll(corpus.train, -offset), config.batch_size).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    every = max(1, config.steps // max(1, config.evals))
    curves: dict[str, list[float]] = {"step": [], "train_bpc": [], "val_bpc": []}
    uniform = math.log2(corpus.n_vocab)
    state = model.initial_state(config.batch_size, dev)
    pos, loss_sum, n_sum = 0, 0.0, 0
    stopped: str | None = None
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        if pos + config.bptt + 1 > len(cols):
            pos, state = 0, model.initial_state(config.batch_size, dev)
        model.train()
        x, y = cols[pos : pos + config.bptt], cols[pos + 1 : pos + 1 + config.bptt]
        pos += config.bptt
        state = detach(state)
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        value = loss.item()
        if not math.isfinite(value):
            raise ChildDiverged(f"loss became {value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        loss_sum, n_sum = loss_sum + value, n_sum + 1
        if step % every == 0 or step == config.steps:
            val = bits_per_char(model, corpus.val, dev)
            _check_finite("validation", val, uniform, step)
            curves["step"].append(float(step))
            curves["train_bpc"].append(loss_sum / n_sum / math.log(2))
            curves["val_bpc"].append(val)
            loss_sum, n_sum = 0.0, 0
            stopped = _stop_reason(step, len(curves["val_bpc"]) - 1, val, uniform, config, should_stop)
            if stopped is not None:
                break
    train_time = time.perf_counter() - started
    test = bits_per_char(model, corpus.test, dev)
    _check_finite("test", test, uniform, step)
    return LMOutcome(curves["val_bpc"][-1], test, curves, train_time, stopped)


class _OneStep(nn.Module):
    """A language model reading one character from the initial state: what one character costs."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(1, -1)
        return self.model(x, self.model.initial_state(x.shape[1], x.device))[0]


def one_char_cost(model: CharLM, device: torch.device) -> dict[str, float]:
    """Parameters, multiply-adds per character (convolutions and linear layers) and latency of one step."""
    from l2l.nas.cost import count_macs, count_parameters, latency_s

    step = _OneStep(model).to(device)
    x = torch.zeros(1, 1, dtype=torch.long, device=device)
    return {
        "params": float(count_parameters(model)),
        "flops": float(count_macs(step, x)),
        "latency_s": latency_s(step, x),
    }
