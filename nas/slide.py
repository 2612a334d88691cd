"""Output layers for many classes that train on a few of them per example: SLIDE and sampled softmax.

SLIDE (Chen et al., MLSys 2020) hashes the output neurons (classes, words) into locality-sensitive hash
tables by their weight vectors. In training each example hashes its hidden vector, takes the neurons
its buckets hold (a window of ``ceil(k / tables)`` per table, topped up with uniform random neurons when
a bucket runs short, as SLIDE does), adds its true label, and computes the softmax cross-entropy over
that active set only. Evaluation scores the full layer, so the reported metric is honest. Tables are
rebuilt from the current weights after ``rebuild_first`` steps, then at intervals growing by
``rebuild_growth`` (SLIDE's exponentially decaying rebuild rate); their cost is counted.

The kernel (`l2l.nas.slide_kernel.ActiveRows`, on CPU): per-example active sets are the pattern of a sparse CSR
matrix, scored by one sampled dense-dense product (`torch.sparse.sampled_addmm`) and differentiated by two
sparse-dense products, with no Python loop over examples and no gathered copy of the active rows; the
weight's gradient is a sparse tensor holding the active rows only, and `RowAdam` (SparseAdam's
arithmetic) updates only those rows: a dense Adam step over the whole weight every batch would cost more
than the layer saves.

Sampled softmax (Jean et al. 2015) is the baseline at the same number of active neurons: ``k`` negatives
per batch drawn uniformly or by training label frequency, scored with the logQ correction (each logit
minus the log of its expected count), accidental hits removed.

Every layer counts the multiply-adds it does in training (`macs`, over `examples`): the products with
the active rows, the hashing of queries and the table rebuilds. The bias is the weight's last column
(the hidden vector gets a constant 1), so one product covers both.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from l2l.nas.denil import learned_points, random_dictionary
from l2l.nas.hashed import lsh_codes, sorted_tables
from l2l.nas.slide_kernel import RowAdam, active_scores, draw, proposal, unique_rows


class OutputLayer(nn.Module, ABC):
    """``n_in`` -> scores over ``n_out`` classes: a training loss over what it evaluates, full logits to evaluate."""

    sparse = False  # True: the weight's gradient is sparse (active rows only); train it with RowAdam

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        if min(n_in, n_out) < 1:
            raise ValueError(f"an output layer needs n_in, n_out >= 1, got {n_in}, {n_out}")
        self.n_in, self.n_out = n_in, n_out
        self.weight = nn.Parameter(torch.empty(n_out, n_in + 1))  # the last column is the bias
        bound = 1 / math.sqrt(n_in)  # nn.Linear's initialization
        nn.init.uniform_(self.weight, -bound, bound)
        self.macs = 0  # multiply-adds done in training, counted as computed
        self.examples = 0  # training examples seen

    @staticmethod
    def with_one(h: torch.Tensor) -> torch.Tensor:
        """``h`` with a constant 1 appended: what the weight's bias column multiplies."""
        return torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every class (evaluation): (batch, n_out)."""
        return self.with_one(h) @ self.weight.t()

    @abstractmethod
    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training cross-entropy of ``h`` (batch, n_in) with true classes ``y`` (batch,)."""

    def count(self, examples: int, macs: int) -> None:
        """Record ``macs`` multiply-adds done for ``examples`` training examples."""
        self.examples += examples
        self.macs += macs

    def macs_per_example(self) -> float:
        """Training multiply-adds per example so far (the dense layer's count before any training)."""
        return self.macs / self.examples if self.examples else float(self.n_out * (self.n_in + 1))


class DenseOutput(OutputLayer):
    """The full softmax: every class scored for every example."""

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.count(len(h), len(h) * self.n_out * (self.n_in + 1))
        return F.cross_entropy(self.logits(h), y)


class SlideOutput(OutputLayer):
    """SLIDE's output layer: each example scores the ``k`` neurons its LSH buckets retrieve plus its label."""

    sparse = True
    proj: torch.Tensor
    order: torch.Tensor
    sorted_codes: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_out: int,
        active: float = 0.05,
        tables: int = 8,
        bits: int | None = None,
        rebuild_first: int = 50,
        rebuild_growth: float = 1.5,
        seed: int = 0,
    ) -> None:
        super().__init__(n_in, n_out)
        if not 0 < active <= 1:
            raise ValueError(f"active must be a fraction in (0, 1], got {active}")
        if tables < 1 or rebuild_first < 1 or rebuild_growth < 1:
            raise ValueError(
                f"slide needs tables, rebuild_first >= 1 and rebuild_growth >= 1, got {tables}, {rebuild_first}, "
                f"{rebuild_growth}"
            )
        self.k = max(1, round(active * n_out))
        self.tables = tables
        self.cap = math.ceil(self.k / tables)  # neurons taken from each table's bucket
        # enough buckets that one holds about ``cap`` neurons on average
        self.bits = bits if bits is not None else max(1, round(math.log2(max(2.0, n_out / self.cap))))
        if not 1 <= self.bits <= 40:
            raise ValueError(f"bits must be in 1..40, got {self.bits}")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(tables * self.bits, n_in, generator=gen))
        self.register_buffer("order", torch.zeros(tables, n_out, dtype=torch.long))
        self.register_buffer("sorted_codes", torch.zeros(tables, n_out, dtype=torch.long))
        self.rebuild_growth = rebuild_growth
        self.interval = float(rebuild_first)
        self.steps, self.next_rebuild, self.rebuilds, self.rebuild_seconds = 0, rebuild_first, 0, 0.0
        self.rebuild()

    @torch.no_grad()
    def rebuild(self) -> None:
        """Hash every neuron's weight vector into the tables; the multiply-adds and seconds are counted."""
        started = time.perf_counter()
        codes = lsh_codes(self.weight.detach()[:, :-1], "simhash", self.proj, self.tables, self.bits)
        order, sorted_codes = sorted_tables(codes.t())
        self.order.copy_(order)
        self.sorted_codes.copy_(sorted_codes)
        self.macs += self.n_out * self.proj.shape[0] * self.n_in
        self.rebuilds += 1
        self.rebuild_seconds += time.perf_counter() - started

    @torch.no_grad()
    def active_set(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each example's active neurons, its label among them: ids (batch, k + 1) sorted ((batch, n_out) when
        all are active), whether each counts (a neuron retrieved twice, or the label retrieved again, counts
        once), and the label's column."""
        batch = h.shape[0]
        if self.k >= self.n_out:  # every neuron (the label among them, once): the dense layer
            ids = torch.arange(self.n_out, device=h.device).expand(batch, -1)
            return ids, torch.ones_like(ids, dtype=torch.bool), y.clone()
        else:
            self.macs += batch * self.proj.shape[0] * self.n_in  # hashing the queries
            q = lsh_codes(h, "simhash", self.proj, self.tables, self.bits).t().contiguous()  # (tables, batch)
            lo = torch.searchsorted(self.sorted_codes, q)
            size = torch.searchsorted(self.sorted_codes, q, right=True) - lo
            start = (torch.rand(q.shape, device=h.device) * size).long()  # a random window of each bucket
            j = torch.arange(self.cap, device=h.device)
            pos = lo[..., None] + (start[..., None] + j) % size.clamp(min=1)[..., None]  # (tables, batch, cap)
            found = self.order.gather(1, pos.clamp(max=self.n_out - 1).view(self.tables, -1)).view(pos.shape)
            fill = torch.randint(0, self.n_out, pos.shape, device=h.device)  # a short bucket is topped up at random
            ids = torch.where(j < size[..., None], found, fill).permute(1, 0, 2).reshape(batch, -1)[:, : self.k]
        # sorted per example (int32 keys sort faster; classes < 2^31): a CSR pattern's columns, with a
        # neuron's repeats side by side
        ids = torch.cat([y[:, None], ids], dim=1).to(torch.int32).sort(dim=1).values.long()
        counts = torch.ones_like(ids, dtype=torch.bool)
        counts[:, 1:] = ids[:, 1:] != ids[:, :-1]  # a neuron retrieved twice counts once
        return ids, counts, torch.searchsorted(ids, y[:, None]).squeeze(1)  # the label's column: its first copy

    def tick(self) -> None:
        """One training step: the tables are rebuilt when the schedule says so."""
        if self.training:
            self.steps += 1
            if self.steps >= self.next_rebuild:
                self.rebuild()
                self.interval *= self.rebuild_growth
                self.next_rebuild = self.steps + max(1, round(self.interval))

    def active_logits(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores of each example's active set (a repeat is -inf), the sorted ids and the label's column."""
        ids, counts, label = self.active_set(h.detach(), y)
        scores = active_scores(self.with_one(h), self.weight, ids).masked_fill(~counts, -math.inf)
        self.count(len(h), ids.numel() * (self.n_in + 1))
        return scores, ids, label

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.tick()
        scores, _, label = self.active_logits(h, y)
        return F.cross_entropy(scores, label)


class SlideTailOutput(SlideOutput):
    """SLIDE's retrieved neurons and the label scored exactly, and the rest of the softmax's normaliser
    estimated by importance sampling (the "LSH softmax" of Mussmann et al. 2017 and Levy et al. 2018).

    Of the ``k`` active neurons an example gets, ``k - m`` come from the hash tables as in `SlideOutput`
    and ``m = tail * k`` are drawn for the batch from a proposal ``q`` (training label frequency, add-one;
    uniform without frequencies). A drawn neuron scores ``logit - log(m q)`` and is dropped for an example
    whose exact set ``S`` already holds it, so ``sum over S of exp(logit)`` plus ``sum over the draws not in
    S of exp(logit) / (m q)`` is an unbiased estimate of the full softmax's normaliser (the loss takes its
    log, so the loss itself is biased low, by Jensen, as sampled softmax's is). SLIDE alone normalises
    over its retrieved set, which lacks the frequent classes a full softmax must push down; the tail puts
    them back in expectation. ``k`` is at least 2 (one neuron retrieved, one drawn)."""

    log_mq: torch.Tensor
    cdf: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_out: int,
        active: float = 0.05,
        frequencies: torch.Tensor | None = None,
        tail: float = 0.5,
        seed: int = 0,
    ) -> None:
        if not 0 < active <= 1 or not 0 < tail < 1:
            raise ValueError(f"slide_tail needs active in (0, 1] and tail in (0, 1), got {active}, {tail}")
        k = max(2, round(active * n_out))
        self.m = min(k - 1, max(1, round(tail * k)))
        super().__init__(n_in, n_out, (k - self.m) / n_out, seed=seed)
        q = proposal(n_out, frequencies)
        self.register_buffer("log_mq", (q * self.m).log().float())
        self.register_buffer("cdf", q.cumsum(0))

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.tick()
        head, ids, label = self.active_logits(h, y)
        with torch.no_grad():
            drawn = draw(self.cdf, self.m, h.device)
            wide = drawn.expand(len(h), -1).contiguous()
            held = ids.gather(1, torch.searchsorted(ids, wide).clamp(max=ids.shape[1] - 1)) == wide
        rows = F.embedding(drawn, self.weight, sparse=True)
        tail = (self.with_one(h) @ rows.t() - self.log_mq[drawn]).masked_fill(held, -math.inf)
        self.count(0, len(h) * self.m * (self.n_in + 1))  # the examples are counted once, by the head
        return F.cross_entropy(torch.cat([head, tail], dim=1), label)


class SampledSoftmax(OutputLayer):
    """Sampled softmax: the label and ``k`` negatives shared by the batch, logits corrected by log Q."""

    sparse = True
    log_q: torch.Tensor
    cdf: torch.Tensor

    def __init__(self, n_in: int, n_out: int, active: float = 0.05, frequencies: torch.Tensor | None = None) -> None:
        super().__init__(n_in, n_out)
        if not 0 < active <= 1:
            raise ValueError(f"active must be a fraction in (0, 1], got {active}")
        self.k = max(1, round(active * n_out))
        q = proposal(n_out, frequencies)
        self.register_buffer("log_q", (q * self.k).log().float())  # expected count of each class among k draws
        self.register_buffer("cdf", q.cumsum(0))

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            negatives = draw(self.cdf, self.k, h.device)
        rows = F.embedding(torch.cat([y, negatives]), self.weight, sparse=True)
        h1 = self.with_one(h)
        true = torch.bmm(rows[: len(y)].unsqueeze(1), h1.unsqueeze(-1)).squeeze(-1) - self.log_q[y][:, None]
        neg = (h1 @ rows[len(y) :].t() - self.log_q[negatives]).masked_fill(negatives[None] == y[:, None], -math.inf)
        self.count(len(h), (len(y) + len(y) * self.k) * (self.n_in + 1))
        return F.cross_entropy(torch.cat([true, neg], dim=1), torch.zeros_like(y))


class PredictedOutput(OutputLayer):
    """Denil's predicted parameters in the output layer: each class's weight row is ``U v``, ``U`` (n_in, a) a
    FIXED dictionary (a buffer, never seen by an optimizer) and only ``v`` (a values a class) and the bias
    learned. The output layer's inputs (hidden units) have no topology, so ``U`` is `l2l.nas.denil`'s fixed
    random orthonormal dictionary, not a smoothness prior. Computed in the cheaper order, ``(h U) [v | b]^T``:
    ``n_in x a + n_out x (a + 1)`` multiply-adds an example, every class scored (a full softmax)."""

    u: torch.Tensor

    def __init__(self, n_in: int, n_out: int, share: float = 0.25, seed: int = 0) -> None:
        super().__init__(n_in, n_out)
        if not 0 < share < 1:
            raise ValueError(f"a predicted output layer learns a share in (0, 1) of each row, got {share}")
        a = learned_points(repr(share), n_in)
        if a is None:
            raise ValueError(f"a predicted output layer needs n_in >= 2 to predict anything, got {n_in}")
        self.a, self.per_example = a, n_in * a + n_out * (a + 1)
        self.register_buffer("u", random_dictionary(n_in, a, seed))  # fixed
        # like nn.Linear in scale (|U v| = |v|, U orthonormal): E |row|^2 = 1/3; the last column is the bias
        self.weight = nn.Parameter(torch.empty(n_out, a + 1))
        nn.init.uniform_(self.weight[:, :-1], -1 / math.sqrt(a), 1 / math.sqrt(a))
        nn.init.uniform_(self.weight[:, -1], -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return super().logits(h @ self.u)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.count(len(h), len(h) * self.per_example)
        return F.cross_entropy(self.logits(h), y)

    def macs_per_example(self) -> float:
        return float(self.per_example)

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, learned={self.a}/{self.n_in} a row (fixed random dictionary)"


OutputFactory = Callable[..., OutputLayer]


def _sampled(uniform: bool) -> OutputFactory:
    def make(n_in: int, n_out: int, active: float, frequencies: torch.Tensor, seed: int) -> OutputLayer:
        return SampledSoftmax(n_in, n_out, active, None if uniform else frequencies)

    return make


# kind -> factory(n_in, n_out, active, frequencies (training counts per class), seed): one entry per layer kind
OUTPUT_LAYERS: dict[str, OutputFactory] = {
    "dense": lambda n_in, n_out, active, frequencies, seed: DenseOutput(n_in, n_out),
    "slide": lambda n_in, n_out, active, frequencies, seed: SlideOutput(n_in, n_out, active, seed=seed),
    "slide_tail": lambda n_in, n_out, active, frequencies, seed: SlideTailOutput(
        n_in, n_out, active, frequencies, seed=seed
    ),
    "sampled_uniform": _sampled(uniform=True),
    "sampled_unigram": _sampled(uniform=False),
    # ``active`` is the learned share of each weight row here
    "predicted": lambda n_in, n_out, active, frequencies, seed: PredictedOutput(n_in, n_out, active, seed),
}


def output_layer(kind: str, n_in: int, n_out: int, active: float, frequencies: torch.Tensor, seed: int) -> OutputLayer:
    """The output layer of ``kind`` (a key of `OUTPUT_LAYERS`)."""
    if kind not in OUTPUT_LAYERS:
        raise ValueError(f"unknown output layer {kind!r}; known: {', '.join(OUTPUT_LAYERS)}")
    return OUTPUT_LAYERS[kind](n_in, n_out, active, frequencies, seed)


class SparseDenseAdam:
    """Adam for a model whose sparse-gradient parameters (SLIDE's and sampled softmax's weight, sparse
    embeddings) take `RowAdam` (`torch.optim.SparseAdam`'s arithmetic: moments and weights updated on the
    rows with a gradient only), and the others `torch.optim.Adam`. On a gradient covering every row the two
    agree."""

    def __init__(self, model: nn.Module, lr: float) -> None:
        sparse_ids = {id(p) for p in sparse_parameters(model)}
        sparse = [p for p in model.parameters() if id(p) in sparse_ids]
        dense = [p for p in model.parameters() if id(p) not in sparse_ids and p.requires_grad]
        self.optimizers: list[torch.optim.Optimizer] = []
        if sparse:
            self.optimizers.append(RowAdam(sparse, lr=lr))
        if dense:
            self.optimizers.append(torch.optim.Adam(dense, lr=lr))
        self.params = sparse + dense

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale every gradient, sparse ones included, so that their joint norm is at most ``max_norm`` (what
        `nn.utils.clip_grad_norm_` does for dense ones, so every output layer kind is clipped alike); returns
        the norm before."""
        for p in self.params:  # each sparse gradient's rows sorted and summed once, here: RowAdam's step only checks
            if p.grad is not None and p.grad.is_sparse and not p.grad.is_coalesced():
                rows, values = unique_rows(p.grad)
                p.grad = torch.sparse_coo_tensor(rows[None], values, p.grad.shape, check_invariants=False)
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return 0.0
        squares = [(g._values() if g.is_sparse else g).square().sum() for g in grads]
        norm = float(torch.stack(squares).sum().sqrt())
        if norm > max_norm:
            for g in grads:
                g.mul_(max_norm / (norm + 1e-6))
        return norm

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


def sparse_parameters(model: nn.Module) -> Iterable[torch.Tensor]:
    """The parameters whose gradients are sparse: sparse embeddings' and sparse output layers' weights."""
    for m in model.modules():
        if (isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse) or (isinstance(m, OutputLayer) and m.sparse):
            yield m.weight
