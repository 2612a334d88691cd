"""What a child costs: parameters, multiply-adds of one forward pass, and measured inference latency."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of convolutions and linear layers for one input (``example`` holds one, batch 1)."""
    total = 0

    def conv_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv1d | nn.Conv2d)
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


@torch.no_grad()
def latency_s(model: nn.Module, example: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds of one forward pass of one input on the model's device."""
    model.eval()
    model(example)  # warm-up
    times = []
    for _ in range(repeats):
        if example.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(example)
        if example.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
