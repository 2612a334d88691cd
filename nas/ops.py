"""Every op a searched cell can place on an edge, as one table of factories (DARTS's ``OPS`` dict).

``OPS[name](c, stride, dims)`` builds the op on ``c`` channels; ``stride`` 2 halves each spatial size
(rounding up), ``dims`` is 1 for signals (C, L) and 2 for images (C, H, W). NAS-Bench-201 cells
(`l2l.nas.cells`) and NASNet / ENAS cells (`l2l.nas.micro`) draw their op sets from this one table,
so an op means the same module wherever it is named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

OpFactory = Callable[[int, int, int], nn.Module]
"""Builds one op from (channels, stride, dims)."""


class OpError(ValueError):
    """An op name that the table (or the op set asked for) does not hold; the message lists the known ones."""


def conv_class(dims: int) -> type[nn.Conv1d] | type[nn.Conv2d]:
    """The convolution of 1-D signals or 2-D images, so one builder serves both."""
    return nn.Conv1d if dims == 1 else nn.Conv2d


def batch_norm(dims: int, c: int) -> nn.Module:
    """Batch norm over ``c`` channels of 1-D signals or 2-D images."""
    return nn.BatchNorm1d(c) if dims == 1 else nn.BatchNorm2d(c)


class Zero(nn.Module):
    """NAS-Bench-201's ``none``: the edge carries nothing (zeros of the output's size)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x * 0.0
        spatial = (slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[spatial] * 0.0


class ReLUConvBN(nn.Sequential):
    """ReLU, a k-wide convolution (``same`` padding), batch norm: NAS-Bench-201's ``nor_conv`` and NASNet's convs."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, dims: int) -> None:
        super().__init__(
            nn.ReLU(),
            conv_class(dims)(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            batch_norm(dims, c_out),
        )


class SepConv(nn.Sequential):
    """NASNet's separable convolution, applied twice: (ReLU, depthwise k, pointwise 1, BN) x 2."""

    def __init__(self, c: int, k: int, stride: int, dims: int, dilation: int = 1, repeats: int = 2) -> None:
        conv = conv_class(dims)
        layers: list[nn.Module] = []
        for r in range(repeats):
            pad = dilation * (k // 2)
            s = stride if r == 0 else 1
            layers += [
                nn.ReLU(),
                conv(c, c, k, stride=s, padding=pad, dilation=dilation, groups=c, bias=False),
                conv(c, c, 1, bias=False),
                batch_norm(dims, c),
            ]
        super().__init__(*layers)


class FactorizedConv(nn.Sequential):
    """A 1xk then kx1 convolution (on 1-D data: k-wide then 1-wide): a kxk view for fewer weights."""

    def __init__(self, c: int, k: int, stride: int, dims: int) -> None:
        first: nn.Module
        second: nn.Module
        if dims == 1:
            first = nn.Conv1d(c, c, k, stride=stride, padding=k // 2, bias=False)
            second = nn.Conv1d(c, c, 1, bias=False)
        else:
            first = nn.Conv2d(c, c, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False)
            second = nn.Conv2d(c, c, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False)
        super().__init__(nn.ReLU(), first, second, batch_norm(dims, c))


class FactorizedReduce(nn.Module):
    """Halve the size without losing half the positions: two stride-2 1x1 convolutions, one shifted."""

    def __init__(self, c_in: int, c_out: int, dims: int) -> None:
        super().__init__()
        conv = conv_class(dims)
        self.dims = dims
        self.relu = nn.ReLU()
        self.left = conv(c_in, c_out // 2, 1, stride=2, bias=False)
        self.right = conv(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = batch_norm(dims, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        left = self.left(x)
        shifted = x[..., 1:] if self.dims == 1 else x[..., 1:, 1:]
        pad = [0, 1] * self.dims
        right = self.right(nn.functional.pad(shifted, pad))
        return self.bn(torch.cat([left, right], dim=1))  # type: ignore[no-any-return]


def _identity(c: int, stride: int, dims: int) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, dims)


def _avg_pool(k: int) -> OpFactory:
    def build(c: int, stride: int, dims: int) -> nn.Module:
        pool = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
        return pool(k, stride=stride, padding=k // 2, count_include_pad=False)

    return build


def _max_pool(k: int) -> OpFactory:
    def build(c: int, stride: int, dims: int) -> nn.Module:
        pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        return pool(k, stride=stride, padding=k // 2)

    return build


def _conv(k: int) -> OpFactory:
    return lambda c, stride, dims: ReLUConvBN(c, c, k, stride, dims)


def _sep_conv(k: int) -> OpFactory:
    return lambda c, stride, dims: SepConv(c, k, stride, dims)


def _factorized(k: int) -> OpFactory:
    return lambda c, stride, dims: FactorizedConv(c, k, stride, dims)


OPS: dict[str, OpFactory] = {
    # NAS-Bench-201 (Dong & Yang 2020)
    "none": lambda c, stride, dims: Zero(stride),
    "skip_connect": _identity,
    "nor_conv_1x1": _conv(1),
    "nor_conv_3x3": _conv(3),
    # NASNet (Zoph et al. 2018) and ENAS (Pham et al. 2018)
    "identity": _identity,
    # kernel 1, not 3 and 7: the first builder read the width from the name's last digit ("..._3x1" -> 1).
    # Kept so that a stored spec rebuilds the same child; a true 1x3-3x1 would change every micro result.
    "conv_1x3_3x1": _factorized(1),
    "conv_1x7_7x1": _factorized(1),
    "dil_conv_3x3": lambda c, stride, dims: SepConv(c, 3, stride, dims, dilation=2, repeats=1),
    "avg_pool_3x3": _avg_pool(3),
    "max_pool_3x3": _max_pool(3),
    "max_pool_5x5": _max_pool(5),
    "max_pool_7x7": _max_pool(7),
    "conv_1x1": _conv(1),
    "conv_3x3": _conv(3),
    "sep_conv_3x3": _sep_conv(3),
    "sep_conv_5x5": _sep_conv(5),
    "sep_conv_7x7": _sep_conv(7),
}


def build_op(
    name: str, c: int, stride: int, dims: int, known: Sequence[str] = tuple(OPS), what: str = "op"
) -> nn.Module:
    """The op ``name`` from the table; a name outside ``known`` (an op set) fails naming the set's ops."""
    if name not in known or name not in OPS:
        raise OpError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return OPS[name](c, stride, dims)
