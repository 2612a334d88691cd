"""The LSTM policy of Zoph & Le: one decision per step, with anchor attention for skip connections."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from l2l.controllers.base import ControllerError
from l2l.search_spaces.api import Decision, sequence_length


class LSTMPolicy(nn.Module):
    """Autoregressive sampler over a space's decisions.

    At each step a stacked LSTM reads the embedding of the previous choice. A categorical decision
    has its own softmax head and embedding table. An anchor decision scores every earlier anchor j
    with P(j -> i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i)) and samples each bit; the next
    input is the mean hidden state of the chosen anchors (a learned vector when none is chosen).
    Logits are divided by ``temperature`` and squashed as ``tanh_constant * tanh(logits)`` when
    those are set (ENAS: 5.0 and 2.5).
    """

    def __init__(
        self,
        decisions: Sequence[Decision],
        hidden_size: int = 64,
        lstm_layers: int = 2,
        init_range: float = 0.1,
        temperature: float | None = None,
        tanh_constant: float | None = None,
    ) -> None:
        super().__init__()
        if hidden_size < 1 or lstm_layers < 1:
            raise ControllerError(f"hidden_size and lstm_layers must be >= 1, got {hidden_size}, {lstm_layers}")
        if temperature is not None and temperature <= 0:
            raise ControllerError(f"temperature must be > 0, got {temperature}")
        if tanh_constant is not None and tanh_constant <= 0:
            raise ControllerError(f"tanh_constant must be > 0, got {tanh_constant}")
        self.decisions = list(decisions)
        self.length = sequence_length(self.decisions)
        if self.length == 0:
            raise ControllerError("the decisions hold no choice to sample")
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cells = nn.ModuleList(nn.LSTMCell(hidden_size, hidden_size) for _ in range(lstm_layers))
        self.embeddings = nn.ModuleList()
        self.heads = nn.ModuleList()
        n_anchors = 0
        for d in self.decisions:
            if d.kind == "categorical":
                self.embeddings.append(nn.Embedding(d.n_choices, hidden_size))
                self.heads.append(nn.Linear(hidden_size, d.n_choices))
            else:
                if d.n_prev > n_anchors:
                    raise ControllerError(
                        f"anchor {d.name!r} refers to {d.n_prev} earlier anchors, only {n_anchors} exist"
                    )
                n_anchors += 1
                self.embeddings.append(nn.Embedding(1, hidden_size))
                self.heads.append(nn.Identity())
        self.w_prev = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_curr = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def _shape(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def forward(
        self,
        n: int,
        generator: torch.Generator | None = None,
        forced: torch.Tensor | None = None,
        allowed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``n`` sequences (or score the ``forced`` ones): tokens [n, L], log-prob [n], entropy [n].

        ``allowed`` maps the tokens sampled so far [n, pos] to a bool mask [n, values] of the values
        permitted at position ``pos`` (an anchor's bits are positions of 2 values each); sampling is
        restricted to them, while the log-prob and entropy stay those of the unrestricted policy, the
        quantities the gradient and the PPO ratio are defined on.
        """
        if forced is not None and tuple(forced.shape) != (n, self.length):
            raise ControllerError(f"forced tokens have shape {tuple(forced.shape)}, expected ({n}, {self.length})")
        x = self.start.expand(n, -1)
        state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.cells)
        anchor_h: list[torch.Tensor] = []
        anchor_keys: list[torch.Tensor] = []
        out: list[torch.Tensor] = []
        log_prob = x.new_zeros(n)
        entropy = x.new_zeros(n)
        pos = 0
        for d, emb, head in zip(self.decisions, self.embeddings, self.heads, strict=True):
            h = x
            for layer, cell in enumerate(self.cells):
                hc = cell(h, state[layer])
                state[layer] = hc
                h = hc[0]
            if d.kind == "categorical":
                logp_all = F.log_softmax(self._shape(head(h)), dim=-1)
                if forced is None:
                    probs = logp_all.detach().exp()
                    if allowed is not None:
                        probs = probs * allowed(self._so_far(out, n)).to(probs.dtype) + 1e-30
                    tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    tok = forced[:, pos].long()
                log_prob = log_prob + logp_all.gather(1, tok[:, None]).squeeze(1)
                entropy = entropy - (logp_all.exp() * logp_all).sum(1)
                out.append(tok[:, None])
                x = emb(tok)
            else:
                k = d.n_prev
                none_chosen = emb.weight.expand(n, -1)  # type: ignore[operator]
                if k > 0:
                    keys = torch.stack(anchor_keys[:k], dim=1)
                    logits = self._shape(self.v(torch.tanh(keys + self.w_curr(h)[:, None, :])).squeeze(-1))
                    if forced is None and allowed is not None:
                        bits = self._masked_bits(torch.sigmoid(logits.detach()), out, n, allowed, generator)
                    elif forced is None:
                        bits = torch.bernoulli(torch.sigmoid(logits.detach()), generator=generator)
                    else:
                        bits = forced[:, pos : pos + k].to(logits.dtype)
                    log_prob = log_prob - F.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(1)
                    probs = torch.sigmoid(logits)
                    entropy = entropy + F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(1)
                    out.append(bits.long())
                    chosen = bits.sum(1, keepdim=True)
                    mixed = (bits[:, :, None] * torch.stack(anchor_h[:k], dim=1)).sum(1) / chosen.clamp_min(1.0)
                    x = torch.where(chosen > 0, mixed, none_chosen)
                else:
                    x = none_chosen
                anchor_h.append(h)
                anchor_keys.append(self.w_prev(h))
            pos += d.width
        tokens = torch.cat(out, dim=1)
        return tokens, log_prob, entropy

    @staticmethod
    def _so_far(out: list[torch.Tensor], n: int) -> torch.Tensor:
        return torch.cat(out, dim=1) if out else torch.zeros(n, 0, dtype=torch.long)

    def _masked_bits(
        self,
        p: torch.Tensor,
        out: list[torch.Tensor],
        n: int,
        allowed: Callable[[torch.Tensor], torch.Tensor],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Sample an anchor's bits one at a time, forcing a bit where only one value is still allowed."""
        bits: list[torch.Tensor] = []
        for j in range(p.shape[1]):
            ok = allowed(torch.cat([self._so_far(out, n)] + [b[:, None].long() for b in bits], dim=1))
            drawn = torch.bernoulli(p[:, j], generator=generator)
            only_one = ok[:, 1] & ~ok[:, 0]
            only_zero = ok[:, 0] & ~ok[:, 1]
            bits.append(torch.where(only_one, 1.0, torch.where(only_zero, 0.0, drawn)).to(p.dtype))
        return torch.stack(bits, dim=1)
