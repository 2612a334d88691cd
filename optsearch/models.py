"""The models of the optimizer task suite, one factory per name: ``(n_in, n_out, **options) -> nn.Module``.

A task names its model and options as data (`l2l.optsearch.suite.SuiteTask`); a user task may name a
factory of its own as ``"package.module:function"`` with the same signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from l2l.nas.small import small_cnn

ModelFactory = Callable[..., nn.Module]


def linear(n_in: int, n_out: int) -> nn.Module:
    """Logistic (or linear) regression: a convex problem."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))


def mlp(
    n_in: int,
    n_out: int,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """``depth`` hidden layers of ``width``; optional dropout and batch norm after each."""
    acts: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = n_in
    for _ in range(depth):
        layers.append(nn.Linear(width_in, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(acts[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, n_out))
    return nn.Sequential(*layers)


def cnn2d(n_in: int, n_out: int, width: int = 16, batchnorm: bool = False) -> nn.Module:
    """nas.small's CNN on flat square images; with batch norm after each convolution when asked."""
    net = small_cnn(n_in, n_out, width)
    if not batchnorm:
        return net
    layers: list[nn.Module] = []
    for layer in net:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            layers.append(nn.BatchNorm2d(layer.out_channels))
    return nn.Sequential(*layers)


class _Channels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


def cnn1d(n_in: int, n_out: int, width: int = 24) -> nn.Module:
    """Three strided 1-D convolutions over a signal (MNIST-1D's 40 points), then a linear head."""
    length = n_in
    layers: list[nn.Module] = [_Channels()]
    channels = 1
    for _ in range(3):
        layers += [nn.Conv1d(channels, width, 5, stride=2, padding=2), nn.ReLU()]
        channels, length = width, (length + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * length, n_out))


def autoencoder(n_in: int, n_out: int, code: int = 8, width: int = 32) -> nn.Module:
    """Encoder to a ``code``-wide bottleneck and decoder back (tanh), trained on reconstruction."""
    return nn.Sequential(
        nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, code), nn.Tanh(), nn.Linear(code, width), nn.Tanh(),
        nn.Linear(width, n_out),
    )  # fmt: skip


class SequenceClassifier(nn.Module):
    """A GRU reading a signal one point per step; the last hidden state is classified."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 32, chunk: int = 4) -> None:
        super().__init__()
        if n_in % chunk:
            raise ValueError(f"sequence length {n_in} is not a multiple of chunk {chunk}")
        self.chunk = chunk
        self.rnn = nn.GRU(chunk, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.view(x.shape[0], -1, self.chunk))
        return self.head(out[:, -1])  # type: ignore[no-any-return]


class CharLSTM(nn.Module):
    """Embedding, one LSTM layer, linear decoder: next-character logits at every position."""

    def __init__(self, n_in: int, n_out: int, embed: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_out, embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True)
        self.decoder = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.decoder(out)  # type: ignore[no-any-return]


class CharTransformer(nn.Module):
    """A small causal transformer (pre-norm, learned positions) over a window of characters."""

    def __init__(self, n_in: int, n_out: int, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_out, dim)
        self.pos = nn.Parameter(torch.randn(n_in, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, n_out)
        self.mask: torch.Tensor
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(n_in), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.embed(x) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.decoder(self.norm(h))  # type: ignore[no-any-return]


MODELS: dict[str, ModelFactory] = {
    "linear": linear,
    "mlp": mlp,
    "cnn2d": cnn2d,
    "cnn1d": cnn1d,
    "autoencoder": autoencoder,
    "gru": SequenceClassifier,
    "char-lstm": CharLSTM,
    "char-transformer": CharTransformer,
}


def model_factory(name: str) -> ModelFactory:
    """The factory of a built-in model, or of ``"package.module:function"``."""
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot load model factory {name!r}: {exc}") from None
        return factory  # type: ignore[no-any-return]
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)} or 'package.module:function'")


def build_model(name: str, n_in: int, n_out: int, options: dict[str, Any], seed: int) -> nn.Module:
    """The model with initial weights drawn from ``seed`` alone."""
    factory = model_factory(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(n_in, n_out, **options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
