"""SLIDE with an importance-sampled tail (`SlideTailOutput`): the loss it computes, the rows its gradient
touches, and that its normaliser is an unbiased estimate of the full softmax's where SLIDE's alone is not."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch.nn import functional as F

from l2l.nas.slide import SlideOutput, SlideTailOutput, output_layer
from l2l.nas.slide_kernel import draw


def zipf_counts(n: int) -> torch.Tensor:
    return (1000.0 / torch.arange(1, n + 1)).round()


def test_the_loss_is_exact_over_the_retrieved_set_and_log_mq_corrected_over_the_draws() -> None:
    torch.manual_seed(0)
    layer = SlideTailOutput(8, 300, active=0.1, frequencies=zipf_counts(300), seed=1)
    assert (layer.k, layer.m) == (15, 15)
    h, y = torch.randn(5, 8, requires_grad=True), torch.randint(0, 300, (5,))
    torch.manual_seed(3)
    ids, counts, _ = layer.active_set(h.detach(), y)
    drawn = draw(layer.cdf, layer.m, h.device)
    torch.manual_seed(3)  # the same draws inside the loss
    layer.loss(h, y).backward()
    assert layer.weight.grad is not None and layer.weight.grad.is_sparse
    touched = set(layer.weight.grad.coalesce().indices()[0].tolist())
    assert touched <= set(ids.unique().tolist()) | set(drawn.tolist())
    # the same loss written densely: exact head, corrected draws, a draw already in an example's head dropped
    weight = layer.weight.detach().clone().requires_grad_(True)
    logits = torch.cat([h.detach(), torch.ones(5, 1)], 1) @ weight.t()
    head_mask = torch.full((5, 300), -math.inf).scatter_reduce(1, ids, torch.where(counts, 0.0, -math.inf), "amax")
    held = (ids[:, :, None] == drawn[None, None, :]).any(1)
    assert bool(held.any())  # the head-heavy proposal draws what the tables retrieved: the drop is exercised
    tail = logits[:, drawn] - (layer.m * layer.cdf.diff(prepend=layer.cdf.new_zeros(1))).log()[drawn].float()
    full = torch.cat([logits + head_mask, tail.masked_fill(held, -math.inf)], 1)
    F.cross_entropy(full, y).backward()
    torch.testing.assert_close(layer.weight.grad.to_dense(), weight.grad)


def normaliser_estimates(layer: SlideOutput, h: torch.Tensor, y: torch.Tensor, draws: int) -> list[float]:
    """exp(label logit + loss) for one example: the normaliser the layer's loss divides by."""
    label_logit = layer.logits(h)[0, y[0]].item()
    with torch.no_grad():
        return [math.exp(label_logit + layer.loss(h, y).item()) for _ in range(draws)]


def test_the_tail_makes_the_normaliser_unbiased_where_slide_alone_misses_the_frequent_classes() -> None:
    torch.manual_seed(5)
    n, dim = 2000, 16
    counts = zipf_counts(n)
    tail = SlideTailOutput(dim, n, active=0.05, frequencies=counts, seed=0, tail=0.5)
    slide = SlideOutput(dim, n, active=0.05, seed=0)
    with torch.no_grad():  # frequent classes score high, as a trained LM's do for most contexts
        bias = 2.0 * (counts + 1).log()
        for layer in (tail, slide):
            layer.weight[:, -1] = bias
    h, y = torch.randn(1, dim), torch.tensor([0])  # the most frequent class: the exact set holds much of the mass
    exact = tail.logits(h).logsumexp(1).exp().item()
    assert tail.logits(h)[0, 0].exp().item() > 0.2 * exact  # so a draw of it counted again would show
    estimates = normaliser_estimates(tail, h, y, 2000)
    error = statistics.stdev(estimates) / math.sqrt(len(estimates))
    assert abs(statistics.mean(estimates) - exact) < 4 * error
    assert abs(statistics.mean(estimates) - exact) < 0.05 * exact
    slide_mean = statistics.mean(normaliser_estimates(slide, h, y, 200))
    assert slide_mean < 0.8 * exact  # its retrieved set lacks the other frequent classes


@pytest.mark.parametrize("active, tail", [(0.0, 0.5), (0.05, 0.0), (0.05, 1.0)])
def test_bad_fractions_are_refused(active: float, tail: float) -> None:
    with pytest.raises(ValueError, match="slide_tail needs active"):
        SlideTailOutput(4, 100, active=active, tail=tail)


def test_the_factory_builds_it_with_the_training_frequencies() -> None:
    layer = output_layer("slide_tail", 4, 100, 0.1, zipf_counts(100), seed=0)
    assert isinstance(layer, SlideTailOutput) and layer.sparse
    q = layer.cdf.diff(prepend=layer.cdf.new_zeros(1))
    assert q[0] > 50 * q[-1]  # frequency-proportional, not uniform
