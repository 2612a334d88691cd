"""Low-rank layers: a weight W = U V of rank r, both factors learned.

(Denil et al. 2013 predict parameters with a FIXED dictionary U from a smoothness prior and learn only V:
that is `l2l.nas.denil`, not this module.)

A rank-r linear layer is two `nn.Linear` layers, in -> r (V, no bias) then r -> out (U, with the
bias), so it holds r (in + out) + out parameters and costs r (in + out) multiply-adds per input; a
rank-r convolution is a k x k convolution to r channels then a 1x1 convolution to the output
channels. `l2l.nas.cost` counts both honestly because they are made of the ordinary modules. The rank
``None`` (or one at least min(in, out) for a linear layer, where factoring saves nothing) gives
the ordinary full-rank layer.

Ranks can be written as fractions of the full rank: ``"full"``, ``"1/2"``, ``"1/4"``, ...
"""

from __future__ import annotations

from torch import nn

from l2l.nas.genotypes import resolve_rank


def linear(n_in: int, n_out: int, rank: str | int | None = None, bias: bool = True) -> nn.Module:
    """A linear layer of the given rank (full rank: `nn.Linear`)."""
    r = resolve_rank(rank, n_in, n_out)
    if r is None:
        return nn.Linear(n_in, n_out, bias=bias)
    return nn.Sequential(nn.Linear(n_in, r, bias=False), nn.Linear(r, n_out, bias=bias))


def conv(
    dims: int,
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    rank: str | int | None = None,
    bias: bool = True,
) -> nn.Module:
    """A ``dims``-D convolution of the given rank: kernel to r channels, then 1x1 to ``c_out`` (full rank:
    one convolution).

    The rank is bounded by min(c_out, c_in x kernel area), the ranks of the weight viewed as a matrix.
    """
    if dims == 1:
        if not isinstance(kernel, int) or not isinstance(padding, int):
            raise ValueError(f"a 1-D convolution takes an integer kernel and padding, got {kernel} and {padding}")
        r = resolve_rank(rank, c_in * kernel, c_out)
        if r is None:
            return nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias)
        first: nn.Module = nn.Conv1d(c_in, r, kernel, stride=stride, padding=padding, bias=False)
        return nn.Sequential(first, nn.Conv1d(r, c_out, 1, bias=bias))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    r = resolve_rank(rank, c_in * kh * kw, c_out)
    if r is None:
        return nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, bias=bias)
    first = nn.Conv2d(c_in, r, (kh, kw), stride=stride, padding=padding, bias=False)
    return nn.Sequential(first, nn.Conv2d(r, c_out, 1, bias=bias))
