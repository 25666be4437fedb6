"""The 3D Swin Transformer block and stage, assembled from the earlier pieces.

A block is two residual sub-layers on a channels-last grid ``(B, D, H, W, C)``:

    x = x + shifted_window_attention(norm1(x))
    x = x + mlp(norm2(x))

A stage stacks blocks that alternate regular windows (shift 0) and windows
displaced by half a window, so information crosses window borders every
other block, and may end with patch merging (half the resolution, twice the
channels), as in SwinUNETR's encoder.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._validate import as_size_tuple, check_int, check_spatial_rank, spatial_ndim
from .window_attention import WindowAttention
from .windows import WindowLayout, check_shift, pad_to_windows, swin_shifts


class Mlp(nn.Module):
    """Position-wise feed-forward network: ``Linear(C, hidden) -> GELU -> Linear(hidden, C)``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` -> ``(..., C)``."""
        return self.fc2(self.act(self.fc1(x)))


def shifted_window_attention(
    x: torch.Tensor, attn: WindowAttention, shift_size, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Window attention over a whole grid: pad, shift, partition, attend, and undo each step.

    Args:
        x: ``(B, D, H, W, C)`` (already normalised).
        attn: the window attention; its ``window_size`` is the nominal window.
        shift_size: the nominal shift (0 for a regular block).
        mask: a boolean ``(nW, N, N)`` mask for the padded grid to use instead
            of the layout's own (only when the block shifts).

    Returns:
        ``(B, D, H, W, C)``.
    """
    check_spatial_rank(x, "x", "channels_last")
    layout = WindowLayout(x.shape[1:-1], attn.window_size, shift_size)
    if layout.shifted:
        mask = layout.mask(x.device) if mask is None else mask
    else:
        mask = None  # regular windows never mix regions
    windows = attn(layout.partition(x), mask=mask, window_size=layout.window)
    return layout.reverse(windows)


class SwinBlock(nn.Module):
    """One 3D (or 2D) Swin Transformer block on a channels-last grid.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window_size: an int (3D) or one int per spatial axis.
        shift_size: an int or per-axis ints, each smaller than the window; 0
            for a regular block, ``window // 2`` for a shifted one.
        mlp_ratio: hidden width of the MLP as a multiple of C.
        qkv_bias: learn biases for q, k, v.
        fused: attention path, see :class:`WindowAttention` (None: the fused one).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size,
        shift_size,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        fused: bool | None = None,
    ):
        super().__init__()
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, fused=fused)
        self.window_size = self.attn.window_size
        self.shift_size = as_size_tuple(shift_size, len(self.window_size), "shift_size", allow_zero=True)
        check_shift(self.window_size, self.shift_size)
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive; received {mlp_ratio}")
        self.dim = dim
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> same shape.

        ``mask`` optionally overrides the layout's shifted-window mask (boolean
        ``(nW, N, N)`` on the padded grid); it is ignored by regular blocks.
        """
        ndim = check_spatial_rank(x, "x", "channels_last")
        if ndim != len(self.window_size) or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be channels-last with {len(self.window_size)} spatial axes and {self.dim} channels, "
                f"(B, {'D, ' if len(self.window_size) == 3 else ''}H, W, {self.dim}); received {tuple(x.shape)}"
            )
        x = x + shifted_window_attention(self.norm1(x), self.attn, self.shift_size, mask)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halve the resolution, double the channels.

    Each 2x2x2 neighbourhood's eight C-vectors are concatenated in row-major
    ``(d, h, w)`` offset order into one 8C vector, normalised, and projected to
    2C without bias. An odd extent is zero-padded at its end first.

    Args:
        dim: input channels C.
        spatial_dims: 3 (default) or 2.
    """

    _PATTERN = {3: "b (d p) (h q) (w r) c -> b d h w (p q r c)", 2: "b (h q) (w r) c -> b h w (q r c)"}
    _OFFSETS = {3: dict(p=2, q=2, r=2), 2: dict(q=2, r=2)}

    def __init__(self, dim: int, spatial_dims: int = 3):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; received {spatial_dims}")
        self.dim = dim
        self.spatial_dims = spatial_dims
        merged = 2**spatial_dims * dim
        self.norm = nn.LayerNorm(merged)
        self.reduction = nn.Linear(merged, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> ``(B, ceil(D/2), ceil(H/2), ceil(W/2), 2C)``."""
        ndim = check_spatial_rank(x, "x", "channels_last")
        if ndim != self.spatial_dims or x.shape[-1] != self.dim:
            raise ValueError(f"x must be channels-last with {self.spatial_dims} spatial axes and {self.dim} channels; received {tuple(x.shape)}")
        x = pad_to_windows(x, 2)
        x = rearrange(x, self._PATTERN[ndim], **self._OFFSETS[ndim])
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """A stage of Swin blocks alternating regular and shifted windows.

    Args:
        dim: channels C.
        depth: number of blocks; even-numbered ones (0, 2, ...) use regular
            windows, odd ones windows shifted by ``window // 2``.
        num_heads: attention heads per block.
        window_size: an int (3D) or one int per spatial axis.
        downsample: None, or a module class called as
            ``downsample(dim=dim, spatial_dims=...)`` (e.g. :class:`PatchMerging`)
            applied after the blocks.
        mlp_ratio, qkv_bias, fused: passed to every :class:`SwinBlock`.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size,
        downsample=None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        fused: bool | None = None,
    ):
        super().__init__()
        depth = check_int(depth, "depth", minimum=1)
        ndim = spatial_ndim(window_size)
        window = as_size_tuple(window_size, ndim, "window_size")
        self.window_size = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shift, mlp_ratio, qkv_bias, fused) for shift in swin_shifts(window, depth)
        )
        self.downsample = downsample(dim=dim, spatial_dims=ndim) if downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> same, or ``(B, D/2, H/2, W/2, 2C)`` after merging."""
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x
