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
    """Multiply-adds of convolutions, linear and recurrent (LSTM, GRU) layers, and of layers that report their
    own (``macs_per_input``, or ``macs_for_output(out)`` when the cost is not per input, as for
    `l2l.nas.denil`'s predicted layers), for ``example`` (one input, batch 1; a sequence for recurrent models)."""
    total = 0

    def conv_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv1d | nn.Conv2d)
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    def rnn_hook(m: nn.Module, inputs: Any, out: Any) -> None:
        nonlocal total
        assert isinstance(m, nn.RNNBase)
        gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
        steps = out[0].shape[0] * out[0].shape[1]  # time x batch (or batch x time)
        per_step = sum(
            gates * m.hidden_size * ((m.input_size if k == 0 else m.hidden_size) + m.hidden_size)
            for k in range(m.num_layers)
        )
        total += steps * per_step

    def own_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.shape[0] * int(m.macs_per_input())  # type: ignore[operator]

    def output_hook(m: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += int(m.macs_for_output(out))  # type: ignore[operator]

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.RNNBase):
            handles.append(m.register_forward_hook(rnn_hook))
        elif hasattr(m, "macs_for_output"):  # layers whose cost depends on the batch (nas.denil)
            handles.append(m.register_forward_hook(output_hook))
        elif hasattr(m, "macs_per_input"):  # layers that know their own cost (nas.hashed.HashedLinear)
            handles.append(m.register_forward_hook(own_hook))
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
