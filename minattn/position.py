"""Relative position bias: a learned score bonus that depends only on offset.

Attention alone sees a set of tokens, not a grid: permute the tokens and each
output is permuted the same way. Swin adds to each score a learned number
looked up by the query-minus-key offset. Inside a window of ``Wd x Wh x Ww``
the offsets range over ``(2Wd-1)(2Wh-1)(2Ww-1)`` values: one table row each.
The alternative of ViT-style models, a code for each token's absolute
position, is here too: :func:`sincos_position_embedding`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import as_size_tuple, spatial_ndim


def _window_coords(window: tuple[int, ...], device=None) -> torch.Tensor:
    """``(N, ndim)`` coordinates of the tokens of a window in row-major order."""
    axes = [torch.arange(w, device=device) for w in window]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(window))


def relative_position_index(window_size, table_window_size=None, device=None) -> torch.Tensor:
    """Index into the bias table for every (query, key) pair of a window.

    Per axis the offset ``query - key`` lies in ``[-(W-1), W-1]``; adding
    ``W - 1`` makes it ``[0, 2W-2]``. The three offsets are flattened as
    ``d * (2Wh-1)(2Ww-1) + h * (2Ww-1) + w``.

    Args:
        window_size: an int (3D) or ``(Wd, Wh, Ww)`` / ``(Wh, Ww)``.
        table_window_size: the window the table was made for, when it is larger
            than ``window_size`` (a window shrunk to a small input). Offsets are
            then placed at their true position in the larger table. Defaults to
            ``window_size``.
        device: where to build the index.

    Returns:
        ``(N, N)`` long tensor, ``N = prod(window_size)``, entries in
        ``[0, prod(2 * table_window_size - 1))``.
    """
    ndim = spatial_ndim(window_size)
    window = as_size_tuple(window_size, ndim, "window_size")
    table = window if table_window_size is None else as_size_tuple(table_window_size, ndim, "table_window_size")
    if any(w > t for w, t in zip(window, table)):
        raise ValueError(f"window {window} is larger than the table's window {table} along some axis")
    coords = _window_coords(window, device)
    offsets = coords[:, None, :] - coords[None, :, :] + torch.tensor(table, device=device) - 1  # (N, N, ndim)
    # Row-major strides of the (2T-1)-sided offset grid: the last axis varies fastest.
    sides = [2 * t - 1 for t in table]
    strides = [math.prod(sides[axis + 1 :]) for axis in range(ndim)]
    return (offsets * torch.tensor(strides, device=device)).sum(-1)


def monai_sliced_index(num_tokens: int, table_window_size, device=None) -> torch.Tensor:
    """The index MONAI uses for a shrunk window of ``num_tokens``: the full window's index cut to ``[:n, :n]``.

    This equals the true geometry only when the shrunk axes are the leading
    ones (e.g. only D shrank): the first ``n`` tokens of the full window are
    then exactly the tokens of the small window. When H or W shrinks, the first
    ``n`` tokens in the full window's row-major order are a different set of
    positions, so pairs get the bias of the wrong offsets.
    """
    full = relative_position_index(table_window_size, device=device)
    if not 1 <= num_tokens <= full.shape[0]:
        raise ValueError(f"num_tokens must lie in [1, {full.shape[0]}] for window {tuple(table_window_size)}; received {num_tokens}")
    return full[:num_tokens, :num_tokens]


class RelativePositionBias(nn.Module):
    """Learnable bias table, looked up by relative offset.

    Args:
        window_size: an int (3D) or one int per spatial axis.
        num_heads: one bias per head.

    Attributes:
        table: ``((2Wd-1)(2Wh-1)(2Ww-1), num_heads)``, initialised from a
            normal with std 0.02 (truncated at two standard deviations).
        index: ``(N, N)`` buffer from :func:`relative_position_index`.
    """

    def __init__(self, window_size, num_heads: int):
        super().__init__()
        ndim = spatial_ndim(window_size)
        self.window_size = as_size_tuple(window_size, ndim, "window_size")
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int; received {num_heads!r}")
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.empty(math.prod(2 * w - 1 for w in self.window_size), num_heads))
        nn.init.trunc_normal_(self.table, std=0.02, a=-0.04, b=0.04)
        self.register_buffer("index", relative_position_index(self.window_size), persistent=False)

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Return the bias ``(num_heads, N, N)``; ``index`` overrides the window's own ``(N, N)`` index."""
        index = self.index if index is None else index
        n_q, n_k = index.shape
        return self.table[index.reshape(-1)].reshape(n_q, n_k, self.num_heads).permute(2, 0, 1)


def sincos_position_embedding(grid, dim: int, temperature: float = 10000.0, device=None, dtype=None) -> torch.Tensor:
    """Fixed sine-cosine position codes for a token grid (absolute position, no parameters).

    The ``dim`` features are shared out evenly over the axes, in the order
    ``(D, H, W)``. Axis ``a`` gets a block of ``2F`` features, ``F = dim / (2 *
    ndim)``: the sines of ``coordinate * omega_i``, then the cosines, with
    frequencies ``omega_i = temperature ** (-i / F)``, ``i = 0 .. F-1``, from
    one cycle per ``2 pi`` tokens down to very slow ones. The dot product of two
    codes is ``sum_a sum_i cos(omega_i * offset_a)``: it depends only on their
    offset, which is why these codes let attention reason about distances.
    MONAI's ``build_sincos_position_embedding`` uses the same frequencies and
    puts axis 1's block first: (H, D, W) in 3D, (W, H) in 2D.

    Args:
        grid: the token grid, an int (a cube) or ``(D, H, W)`` / ``(H, W)``.
        dim: features per token; a multiple of ``2 * ndim``.
        temperature: the slowest frequency's period scale (10000 as in ViT/MAE).
        device: where to build the codes.
        dtype: of the result (default: torch's default float dtype).

    Returns:
        ``(prod(grid), dim)``; row ``n`` is the token at the ``n``-th position
        in row-major order (the last axis fastest), the order of patch tokens.
    """
    ndim = spatial_ndim(grid)
    sizes = as_size_tuple(grid, ndim, "grid")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 or dim % (2 * ndim):
        raise ValueError(
            f"dim must be a positive multiple of 2 * {ndim} = {2 * ndim} (a sine and a cosine per frequency on each "
            f"of the {ndim} axes); received {dim!r}"
        )
    if not temperature > 1:
        raise ValueError(f"temperature must be a number above 1; received {temperature!r}")
    per_axis = dim // (2 * ndim)
    # Build in float64 so the codes are the same whatever dtype is asked for.
    omega = temperature ** -(torch.arange(per_axis, dtype=torch.float64, device=device) / per_axis)
    coords = _window_coords(sizes, device).to(torch.float64)  # (N, ndim), row-major
    blocks = []
    for axis in range(ndim):
        angles = coords[:, axis, None] * omega  # (N, F)
        blocks += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(blocks, dim=-1).to(dtype or torch.get_default_dtype())
