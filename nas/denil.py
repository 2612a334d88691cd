"""Predicted parameters (Denil, Shakibi, Dinh, Ranzato & de Freitas, "Predicting Parameters in Deep
Learning", 2013): a weight whose values are learned at a few points and predicted everywhere else.

Each output unit's weight vector ``w`` (over the n input coordinates of the weight: time positions of a
sequence, pixel positions of an image, tap positions of a convolution filter) is ``w = U_alpha v``.
``v`` holds the learned values at ``a`` chosen points alpha; ``U_alpha`` is a FIXED dictionary (a
registered buffer, never a parameter) that predicts the other values by kernel ridge regression with a
squared-exponential kernel over the coordinates:

    U_alpha = K(all, alpha) (K(alpha, alpha) + ridge I)^-1,   k(x, y) = exp(-|x - y|^2 / (2 l^2))

The length scale ``l`` is given in units of the spacing between alpha points (per dimension) so one
value fits every layer. `DEFAULT_LENGTH` is what ``python -m benchmarks.denil`` chose on validation
data for the digits MLP; MNIST-1D and the convolutions chose shorter ones, at which the dictionary
barely interpolates (benchmarks/README.md). `DEFAULT_RIDGE` is fixed, not tuned. Alpha points are an
evenly spaced grid over integer cells (cell ``i`` of ``g`` along a dimension of ``size`` holds the
coordinates ``floor(i x size / g)`` up to, not including, ``floor((i + 1) x size / g)``): column 0 takes
each cell's centre, the other columns a random coordinate of the cell (a jittered grid). Cells are
disjoint and never empty (``g <= size``), so a column's points are all different.

Columns (the paper's "columnar" architecture): with one dictionary every unit's weights lie in the
same ``a``-dimensional subspace, so the layer has rank at most ``a``. The output units are split into
``columns`` groups, each with its own alpha grid (jittered: each grid line at a random offset in its
cell), so together they cover the coordinates and the layer can reach full rank while each unit
learns only ``a`` values.

The paper's data-driven kernel: given the empirical ``covariance`` of the layer's inputs over training
data (`empirical_covariance`, or `patch_covariance` over the patches a convolution's filters read), the
dictionary is kernel ridge regression with that covariance as the kernel, ``C(all, alpha) (C(alpha, alpha)
+ ridge mean(diag C) I)^-1``: a unit's weights are predicted the way its inputs co-vary. It needs data, so
the layer builders of the spaces do not use it; `benchmarks.denil` chooses between it and the SE kernel on
validation data.

Layers without topology (hidden layers of an MLP: ``shape=None``) have no coordinates for a smoothness
prior. The paper builds an empirical kernel there from the covariance of the layer's inputs, which needs
a trained lower layer (with a ``covariance``, each column takes ``a`` random distinct inputs as its
points); without one such a layer gets a fixed random orthonormal dictionary per column instead
(a random projection, learned-free), one for all units by default (rank ``a``; cheaper than columns,
and better on validation data, 0.654 against 0.624, in a one-seed trial on the MNIST-1D MLP). It is
not Denil's smoothness prior, and docs/spaces.md says so.

Cost as computed: `PredictedLinear` takes, per batch, the cheaper of two orders: project the inputs on
each column's dictionary then apply ``v`` (``columns x a x n_in + n_out x a`` multiply-adds per input),
or build ``W`` (``n_out x n_in x a`` once) then ``x W^T`` (``n_in x n_out`` per input).
`PredictedConv` always builds the filters (``c_out x c_in x k x a`` once) then convolves as a dense
convolution. Both report ``macs_for_output`` so `l2l.nas.cost.count_macs` counts exactly that, and
only ``v`` and the bias are parameters, so `l2l.nas.cost.count_parameters` counts the learned ones.

A choice is the share of a layer's weights LEARNED: ``"dense"``, ``"1/2"``, ``"1/4"``, ``"1/10"``
(``a = floor(share x n)``, at least 1); ``"1/10"`` predicts at least 90% of the weights where n >= 10
(a 3x3 filter learning 1 of 9 predicts 89%; a 3-tap one 67%, the same layer as ``"1/4"``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from l2l.nas.genotypes import learned_points

DEFAULT_LENGTH = 0.25  # SE length scale, in units of the alpha spacing (chosen on validation)
DEFAULT_RIDGE = 0.01  # kernel ridge regularizer lambda
NO_TOPOLOGY = 1e-3  # the SE length of a dimension without topology: neighbours along it get weight exp(-5e5)


def grid_shape(shape: tuple[int, ...], a: int) -> tuple[int, ...]:
    """Points per dimension of an evenly spaced grid of at most ``a`` points over ``shape`` (1-D or 2-D)."""
    if len(shape) == 1:
        return (min(a, shape[0]),)
    h, w = shape
    gh = min(h, max(1, round(math.sqrt(a * h / w))))
    return gh, min(w, max(1, a // gh))


def alpha_points(shape: tuple[int, ...], grid: tuple[int, ...], column: int) -> torch.Tensor:
    """Integer coordinates (a, dims) of column ``column``'s alpha points: one per cell of an evenly spaced
    grid of integer cells, at the cell's centre for column 0 and at a random coordinate of the cell (seeded
    by the column) for the others, so the columns' points differ (a jittered grid) and one column's never
    coincide (the cells are disjoint)."""
    gen = torch.Generator().manual_seed(column)
    axes = []
    for size, g in zip(shape, grid, strict=True):
        offsets = torch.full((g,), 0.5) if column == 0 else torch.rand(g, generator=gen)
        cells = [(i * size // g, (i + 1) * size // g) for i in range(g)]  # [lo, hi): disjoint, g <= size
        picks = [lo + math.floor(float(o) * (hi - lo)) for (lo, hi), o in zip(cells, offsets, strict=True)]
        axes.append(torch.tensor(picks))
    return torch.cartesian_prod(*axes).reshape(-1, len(shape)).double()


def coordinates(shape: tuple[int, ...]) -> torch.Tensor:
    """Every coordinate of ``shape`` in row-major order (the order of a flattened weight): (n, dims)."""
    return torch.cartesian_prod(*[torch.arange(s, dtype=torch.float64) for s in shape]).reshape(-1, len(shape))


def se_dictionary(
    shape: tuple[int, ...],
    grid: tuple[int, ...],
    column: int,
    length: float | tuple[float, ...] = DEFAULT_LENGTH,
    ridge: float = DEFAULT_RIDGE,
) -> torch.Tensor:
    """``U_alpha`` (n, a) of kernel ridge regression with an SE kernel from one column's alpha points;
    ``length`` one for every dimension or one per dimension, 0 for a dimension without topology (no
    interpolation along it: a point predicts only coordinates that share its position there)."""
    lengths = length if isinstance(length, tuple) else (length,) * len(shape)
    scale = torch.tensor(
        [max(ln, NO_TOPOLOGY) * size / g for ln, size, g in zip(lengths, shape, grid, strict=True)],
        dtype=torch.float64,
    )
    every, alpha = coordinates(shape) / scale, alpha_points(shape, grid, column) / scale

    def kernel(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * torch.cdist(p, q).square())

    k_aa = kernel(alpha, alpha) + ridge * torch.eye(len(alpha), dtype=torch.float64)
    return torch.linalg.solve(k_aa, kernel(every, alpha).t()).t().float()  # K_na K_aa^-1 (K_aa symmetric)


def random_dictionary(n: int, a: int, seed: int) -> torch.Tensor:
    """A fixed random dictionary with orthonormal columns (n, a), for layers without topology."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, a, generator=gen, dtype=torch.float64))
    return q.float()


def covariance_dictionary(covariance: torch.Tensor, alpha: torch.Tensor, ridge: float = DEFAULT_RIDGE) -> torch.Tensor:
    """``U_alpha`` (n, a) of kernel ridge regression with an empirical kernel: ``covariance`` (n, n) of the
    layer's inputs over training data, ``alpha`` the flat indices of the learned points. The ridge is
    relative to the mean variance, so the dictionary does not depend on the inputs' scale."""
    c = covariance.double()
    scale = float(c.diagonal().mean()) or 1.0
    k_aa = c[alpha][:, alpha] + ridge * scale * torch.eye(len(alpha), dtype=torch.float64)
    return torch.linalg.solve(k_aa, c[alpha].contiguous()).t().float()  # C_na C_aa^-1 (both symmetric)


def empirical_covariance(inputs: torch.Tensor) -> torch.Tensor:
    """The (n, n) covariance of the rows of ``inputs`` (examples, n): the data-driven kernel of Denil et al."""
    return torch.cov(inputs.reshape(inputs.shape[0], -1).double().t()).float()


def patch_covariance(inputs: torch.Tensor, kernel: tuple[int, ...], padding: int | tuple[int, ...] = 0) -> torch.Tensor:
    """The covariance over the taps of ``kernel`` of every patch a convolution reads from ``inputs``
    (examples, channels, *spatial), channels pooled: the empirical kernel of a convolution's filters."""
    if len(kernel) == 1:
        pad = padding if isinstance(padding, int) else padding[0]
        patches = F.pad(inputs, (pad, pad)).unfold(-1, kernel[0], 1)  # (examples, channels, positions, k)
    else:
        patches = F.unfold(inputs, kernel, padding=padding).transpose(1, 2)  # (examples, positions, c k)
    return empirical_covariance(patches.reshape(-1, math.prod(kernel)))


def _alpha_indices(shape: tuple[int, ...] | None, n: int, a: int, column: int, seed: int) -> torch.Tensor:
    """Flat indices of one column's learned points: its jittered grid over ``shape``, or ``a`` distinct
    random coordinates (seeded by column) where the weight has no topology."""
    if shape is None:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + column))[:a].sort().values
    points = alpha_points(shape, grid_shape(shape, a), column).long()
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    return (points * torch.tensor(strides)).sum(-1)


def dictionaries(
    shape: tuple[int, ...] | None,
    n: int,
    a: int,
    columns: int,
    length: float | tuple[float, ...],
    ridge: float,
    seed: int,
    covariance: torch.Tensor | None = None,
) -> torch.Tensor:
    """One dictionary per column, (columns, n, a'): from the empirical ``covariance`` of the inputs where
    one is given, else SE over ``shape``, else random (``shape`` None). ``a'`` can be below ``a`` where a
    2-D grid cannot hold exactly ``a`` points."""
    if shape is not None:
        if math.prod(shape) != n:
            raise ValueError(f"coordinates {shape} hold {math.prod(shape)} points, the weight has {n}")
        if len(shape) not in (1, 2):
            raise ValueError(f"coordinates must be 1-D or 2-D, got {shape}")
    if covariance is not None:
        if tuple(covariance.shape) != (n, n):
            raise ValueError(f"an empirical kernel over {n} inputs is ({n}, {n}), got {tuple(covariance.shape)}")
        return torch.stack(
            [covariance_dictionary(covariance, _alpha_indices(shape, n, a, c, seed), ridge) for c in range(columns)]
        )
    if shape is None:
        return torch.stack([random_dictionary(n, a, seed * 1000 + c) for c in range(columns)])
    grid = grid_shape(shape, a)
    return torch.stack([se_dictionary(shape, grid, c, length, ridge) for c in range(columns)])


class _Predicted(nn.Module):
    """What the linear and convolutional variants share: the dictionaries, the column of each unit, and
    the learned coefficients ``v`` (units, fan_in_channels, a)."""

    u: torch.Tensor
    group: torch.Tensor

    def _setup(self, u: torch.Tensor, units: int, channels: int, bias: bool) -> None:
        self.register_buffer("u", u)  # fixed: never a parameter, never seen by an optimizer
        columns, self.n, self.a = u.shape
        self.columns = columns
        self.register_buffer("group", torch.arange(units) * columns // units)  # contiguous blocks of units
        self.v = nn.Parameter(torch.empty(units, channels, self.a))
        # like nn.Linear's initialization in scale: E |W row|^2 = E |U v|^2 = var(v) |U|_F^2 = fan_in / (3 fan_in)
        bound = 1.0 / math.sqrt(channels * float(u.square().sum()) / columns)
        nn.init.uniform_(self.v, -bound, bound)
        fan_in = channels * self.n
        b = 1 / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(units).uniform_(-b, b)) if bias else None

    def full_weight(self) -> torch.Tensor:
        """The predicted weight (units, channels, n): ``U_alpha(column of unit) v`` for every unit."""
        return torch.einsum("ona,oca->ocn", self.u[self.group], self.v)

    def weight_macs(self) -> int:
        """Multiply-adds of building the full weight once."""
        return self.v.numel() * self.n

    def learned(self) -> int:
        """Learned values of the weight (``v``; the bias is extra)."""
        return self.v.numel()

    def predicted(self) -> int:
        """Weight values predicted by the dictionary (not learned)."""
        return self.v.shape[0] * self.v.shape[1] * self.n - self.v.numel()


def columns_for(n_out: int, n: int, a: int, columns: int | None, topology: bool = True) -> int:
    """By default enough columns for their alpha grids to cover all ``n`` coordinates (at most one per
    unit); one for a random dictionary, which has no coordinates to cover."""
    if columns is None:
        columns = math.ceil(n / a) if topology else 1
    return max(1, min(n_out, columns))


class PredictedLinear(_Predicted):
    """``n_in`` -> ``n_out`` with weight rows ``U_alpha v``; ``shape`` gives the input's coordinates
    ((40,) for a sequence, (8, 8) for an image), None for a layer without topology."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        learned: int,
        shape: tuple[int, ...] | None = None,
        columns: int | None = None,
        length: float = DEFAULT_LENGTH,
        ridge: float = DEFAULT_RIDGE,
        bias: bool = True,
        seed: int = 0,
        covariance: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= learned <= n_in:
            raise ValueError(f"a predicted layer learns 1..{n_in} points per unit, got {learned}")
        c = columns_for(n_out, n_in, learned, columns, shape is not None or covariance is not None)
        self.n_in, self.n_out = n_in, n_out
        self._setup(dictionaries(shape, n_in, learned, c, length, ridge, seed, covariance), n_out, 1, bias)

    def _factored_macs(self, batch: int) -> int:
        return batch * (self.columns * self.a * self.n_in + self.n_out * self.a)

    def _weight_macs(self, batch: int) -> int:
        return self.weight_macs() + batch * self.n_in * self.n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._factored_macs(x.shape[0]) <= self._weight_macs(x.shape[0]):
            z = torch.einsum("bi,cia->bca", x, self.u)[:, self.group]  # (batch, n_out, a)
            out = (z * self.v[:, 0]).sum(-1)
            return out + self.bias if self.bias is not None else out
        return F.linear(x, self.full_weight()[:, 0], self.bias)

    def macs_for_output(self, out: torch.Tensor) -> int:
        """Multiply-adds of the forward pass that produced ``out`` (the cheaper order, as computed)."""
        return min(self._factored_macs(out.shape[0]), self._weight_macs(out.shape[0]))

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, learned={self.a}/{self.n_in} per unit, columns={self.columns}"


class PredictedConv(_Predicted):
    """A 1-D or 2-D convolution whose filters (per input channel) are ``U_alpha v`` over the filter taps.

    ``joint`` (1-D only): a filter's coordinates are (input channel, tap), and it learns ``learned`` values
    over all of its channels' taps together, on a grid over both (SE along the taps, no interpolation across
    channels, which have no order): the way to predict >= 90% of a layer whose filters have few taps (a
    5-tap filter learning one tap per channel predicts 80%). Each column's filters read the channels of its
    grid; channels outside it get zero weight."""

    def __init__(
        self,
        dims: int,
        c_in: int,
        c_out: int,
        kernel: tuple[int, ...],
        learned: int,
        stride: int = 1,
        padding: int | tuple[int, ...] = 0,
        columns: int | None = None,
        length: float = DEFAULT_LENGTH,
        ridge: float = DEFAULT_RIDGE,
        bias: bool = True,
        covariance: torch.Tensor | None = None,
        joint: bool = False,
    ) -> None:
        super().__init__()
        if dims not in (1, 2) or len(kernel) != dims:
            raise ValueError(f"a predicted convolution is 1-D or 2-D, one kernel size a dimension: {dims}, {kernel}")
        if joint and (dims != 1 or covariance is not None):
            raise ValueError("a joint (channel, tap) grid is built for 1-D convolutions with the SE kernel only")
        self.taps = math.prod(kernel)
        shape, n, length_of = (
            ((c_in, kernel[0]), c_in * self.taps, (0.0, length)) if joint else (kernel, self.taps, length)
        )
        if not 1 <= learned <= n:
            raise ValueError(f"a predicted {shape} filter learns 1..{n} values, got {learned}")
        self.kernel, self.stride, self.padding, self.dims = kernel, stride, padding, dims
        self.c_in, self.c_out, self.joint = c_in, c_out, joint
        c = columns_for(c_out, n, learned, columns)
        u = dictionaries(shape, n, learned, c, length_of, ridge, 0, covariance)
        self._setup(u, c_out, 1 if joint else c_in, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.full_weight().reshape(self.c_out, self.c_in, *self.kernel)
        conv = F.conv1d if self.dims == 1 else F.conv2d
        return conv(x, w, self.bias, self.stride, self.padding)

    def macs_for_output(self, out: torch.Tensor) -> int:
        """Building the filters once, then the dense convolution's multiply-adds."""
        return self.weight_macs() + out.numel() * self.c_in * self.taps

    def extra_repr(self) -> str:
        taps = f"learned={self.a}/{self.n} " + ("(channel, tap) values" if self.joint else "taps")
        return f"{self.c_in}, {self.c_out}, kernel={self.kernel}, {taps}, columns={self.columns}"


def linear(
    n_in: int,
    n_out: int,
    share: str | None = None,
    shape: tuple[int, ...] | None = None,
    bias: bool = True,
    seed: int = 0,
) -> nn.Module:
    """A linear layer learning ``share`` of its weights (``"dense"``: `nn.Linear`); ``shape`` as in
    `PredictedLinear`."""
    a = learned_points(share, n_in)
    if a is None:
        return nn.Linear(n_in, n_out, bias=bias)
    return PredictedLinear(n_in, n_out, a, shape=shape, bias=bias, seed=seed)


def conv(
    dims: int,
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, ...],
    stride: int = 1,
    padding: int | tuple[int, ...] = 0,
    share: str | None = None,
    bias: bool = True,
) -> nn.Module:
    """A ``dims``-D convolution learning ``share`` of each filter's taps (``"dense"``, or a 1x1 kernel
    where there is nothing to predict: the ordinary convolution)."""
    ks = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
    a = learned_points(share, math.prod(ks))
    if a is None:
        layer = nn.Conv1d if dims == 1 else nn.Conv2d
        return layer(c_in, c_out, ks, stride=stride, padding=padding, bias=bias)  # type: ignore[arg-type]
    return PredictedConv(dims, c_in, c_out, ks, a, stride, padding, bias=bias)
