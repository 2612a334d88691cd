"""The models the placement space places: scaled-down GNMT, an Inception-style CNN and a small Transformer.

Each model's ``forward`` takes its example batch and returns the training loss, so one traced graph holds
the whole forward pass of a training step (`l2l.nas.placement.graph` adds the backward pass). Loops over
time steps and layers are plain Python: `torch.fx` unrolls them, so every LSTM step is an op of its own
(what lets layers on different devices work as a pipeline, as in Google's NMT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PlacementModelError(ValueError):
    """An unknown model name."""


class GNMT(nn.Module):
    """Google's NMT scaled down: an encoder and a decoder of ``layers`` LSTM layers each, residual
    connections from the third layer on, attention from the bottom decoder layer fed to the layers above
    it, and a softmax over the target vocabulary (Wu et al., 2016; the bidirectional first encoder layer is
    left out)."""

    def __init__(self, vocab: int = 4096, hidden: int = 256, layers: int = 4, steps: int = 8) -> None:
        super().__init__()
        self.steps = steps
        self.src_embed = nn.Embedding(vocab, hidden)
        self.tgt_embed = nn.Embedding(vocab, hidden)
        self.encoder = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))
        self.decoder = nn.ModuleList(nn.LSTMCell(hidden if i == 0 else 2 * hidden, hidden) for i in range(layers))
        self.query = nn.Linear(hidden, hidden)
        self.softmax = nn.Linear(hidden, vocab)

    def forward(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        x = self.src_embed(src)
        inputs = [x[t] for t in range(self.steps)]
        finals = []
        for depth, cell in enumerate(self.encoder):
            outs, state = self._layer(cell, inputs, None, [None] * self.steps)
            inputs = [o + i for o, i in zip(outs, inputs, strict=True)] if depth >= 2 else outs
            finals.append(state)
        memory = torch.stack(inputs, 1)  # (batch, steps, hidden)
        y = self.tgt_embed(tgt_in)
        bottom, _ = self._layer(self.decoder[0], [y[t] for t in range(self.steps)], finals[0], [None] * self.steps)
        contexts = [self._attend(memory, h) for h in bottom]
        inputs = bottom
        for depth in range(1, len(self.decoder)):
            outs, _ = self._layer(self.decoder[depth], inputs, finals[depth], contexts)
            inputs = [o + i for o, i in zip(outs, inputs, strict=True)] if depth >= 2 else outs
        loss = F.cross_entropy(self.softmax(inputs[0]), tgt_out[0])
        for t in range(1, self.steps):
            loss = loss + F.cross_entropy(self.softmax(inputs[t]), tgt_out[t])
        return loss

    @staticmethod
    def _layer(
        cell: nn.Module, inputs: list[Tensor], state: tuple[Tensor, Tensor] | None, contexts: Sequence[Tensor | None]
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        outs = []
        for x, ctx in zip(inputs, contexts, strict=True):
            x = x if ctx is None else torch.cat([x, ctx], 1)
            state = cell(x) if state is None else cell(x, state)
            outs.append(state[0])
        assert state is not None
        return outs, state

    def _attend(self, memory: Tensor, h: Tensor) -> Tensor:
        scores = torch.bmm(memory, self.query(h).unsqueeze(2)).squeeze(2)
        return torch.bmm(F.softmax(scores, 1).unsqueeze(1), memory).squeeze(1)


class InceptionBlock(nn.Module):
    """Four branches (1x1; 1x1 then 3x3; 1x1 then two 3x3 for 5x5; 3x3 pooling then 1x1), concatenated."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, width, 1)
        self.b3a, self.b3b = nn.Conv2d(cin, width, 1), nn.Conv2d(width, width, 3, padding=1)
        self.b5a, self.b5b = nn.Conv2d(cin, width // 2, 1), nn.Conv2d(width // 2, width, 3, padding=1)
        self.b5c = nn.Conv2d(width, width, 3, padding=1)
        self.bp = nn.Conv2d(cin, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.b1(x))
        b = F.relu(self.b3b(F.relu(self.b3a(x))))
        c = F.relu(self.b5c(F.relu(self.b5b(F.relu(self.b5a(x))))))
        d = F.relu(self.bp(F.avg_pool2d(x, 3, 1, 1)))
        return torch.cat([a, b, c, d], 1)


class Inception(nn.Module):
    """An Inception-style CNN: a stem, ``blocks`` Inception blocks with a 2x2 max pooling after every
    second one, global average pooling and a classifier."""

    def __init__(self, width: int = 32, blocks: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 2 * width, 3, padding=1)
        self.blocks = nn.ModuleList(InceptionBlock(2 * width if i == 0 else 4 * width, width) for i in range(blocks))
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        return F.cross_entropy(self.head(x.mean((2, 3))), y)


class TransformerLayer(nn.Module):
    """A pre-norm Transformer layer: causal self-attention and a feed-forward block, each residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ff1, self.ff2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, steps, 3, self.heads, width // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(batch, steps, width))
        return x + self.ff2(F.gelu(self.ff1(self.norm2(x))))


class Transformer(nn.Module):
    """A small decoder-only Transformer language model (embeddings, ``layers`` layers, a softmax)."""

    def __init__(self, vocab: int = 2048, width: int = 256, heads: int = 4, layers: int = 4, steps: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(steps, width))
        self.layers = nn.ModuleList(TransformerLayer(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.softmax = nn.Linear(width, vocab)

    def forward(self, tokens: Tensor, targets: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos
        for layer in self.layers:
            x = layer(x)
        logits = self.softmax(self.norm(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@dataclass(frozen=True)
class PlacementModel:
    """A model to place and the example batch it is traced and profiled on."""

    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]


def _gnmt() -> PlacementModel:
    g = torch.Generator().manual_seed(0)
    steps, batch, vocab = 8, 32, 4096
    src, tgt = (torch.randint(vocab, (steps, batch), generator=g) for _ in range(2))
    return PlacementModel("gnmt", GNMT(vocab=vocab, steps=steps), (src, tgt, tgt.roll(-1, 0)))


def _inception() -> PlacementModel:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(10, (8,), generator=g)
    return PlacementModel("inception", Inception(), (x, y))


def _transformer() -> PlacementModel:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2048, (8, 33), generator=g)
    return PlacementModel("transformer", Transformer(), (tokens[:, :-1], tokens[:, 1:]))


MODELS: dict[str, Callable[[], PlacementModel]] = {"gnmt": _gnmt, "inception": _inception, "transformer": _transformer}


def build_model(name: str) -> PlacementModel:
    """The shipped model ``name`` with its example batch, weights seeded (0) so every build is the same."""
    if name not in MODELS:
        raise PlacementModelError(f"unknown placement model {name!r}; known: {', '.join(MODELS)}")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MODELS[name]()
