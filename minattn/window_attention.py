"""Multi-head self-attention inside windows, with relative position bias.

The input is a batch of windows ``(B * nW, N, C)`` from :func:`window_partition`.
Every window attends only to itself; the relative position bias tells the
heads where each key sits relative to the query; an optional mask (for
shifted windows) forbids pairs that came from different regions.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from ._validate import as_size_tuple
from .attention import scaled_dot_product_attention
from .multihead import check_heads, merge_heads
from .position import RelativePositionBias, monai_sliced_index, relative_position_index


class WindowAttention(nn.Module):
    """Window multi-head self-attention with relative position bias.

    Args:
        dim: channels C.
        window_size: an int (3D) or one int per spatial axis.
        num_heads: heads; C must be divisible by it.
        qkv_bias: learn biases for the q, k, v projection.

    Attributes:
        qkv: ``nn.Linear(C, 3C)``; output features ``0:C`` are q, ``C:2C`` k,
            ``2C:3C`` v, each a contiguous block of heads.
        proj: ``nn.Linear(C, C)`` mixing the heads.
        position_bias: :class:`RelativePositionBias` for the full window.
        shrunk_window_index: how to index the bias table when a window shrinks
            to a small input: ``"geometric"`` (default) places every pair at its
            true offset; ``"monai"`` copies MONAI, which slices the full
            window's index ``[:n, :n]`` (right only when just D shrank).
    """

    def __init__(self, dim: int, window_size, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        ndim = 3 if isinstance(window_size, int) else len(tuple(window_size))
        self.window_size = as_size_tuple(window_size, ndim, "window_size")
        self.dim = dim
        self.num_heads = num_heads
        # The head's width, not the model's: each head's dot products sum head_dim terms.
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.position_bias = RelativePositionBias(self.window_size, num_heads)
        self.shrunk_window_index = "geometric"

    def bias_for(self, window_size=None) -> torch.Tensor:
        """Relative position bias ``(heads, N, N)`` for a window of ``window_size``.

        ``window_size`` defaults to the module's own; a smaller one (a window
        shrunk to fit a small input) reuses the same table.
        """
        if window_size is None or tuple(window_size) == self.window_size:
            return self.position_bias()
        window = as_size_tuple(window_size, len(self.window_size), "window_size")
        device = self.position_bias.table.device
        if self.shrunk_window_index == "monai":
            index = monai_sliced_index(math.prod(window), self.window_size, device=device)
        else:
            index = relative_position_index(window, table_window_size=self.window_size, device=device)
        return self.position_bias(index)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size=None) -> torch.Tensor:
        """Attend within each window.

        Args:
            x: ``(B * nW, N, C)`` windows of N tokens.
            mask: boolean ``(nW, N, N)``, True = allowed (from
                :func:`shifted_window_mask`); windows are taken to be ordered
                batch-major, as :func:`window_partition` makes them.
            window_size: the window shape the N tokens come from, when it is
                smaller than the module's window (see :meth:`bias_for`).

        Returns:
            ``(B * nW, N, C)``.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B * nW, N, {self.dim}); received {tuple(getattr(x, 'shape', ()))}")
        num_windows, n, c = x.shape
        expected_n = math.prod(self.window_size if window_size is None else window_size)
        if n != expected_n:
            raise ValueError(
                f"x holds {n} tokens per window (dim 1) but the window {window_size or self.window_size} "
                f"holds {expected_n}; pass window_size= for a shrunk window"
            )
        return self.attend(x, self.bias_for(window_size), mask)

    def attend(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention within windows given the position bias ``(heads, N, N)`` to add to the scores.

        ``x`` is ``(B * nW, N, C)`` and ``mask`` an optional boolean ``(nW, N, N)``.
        """
        num_windows, n, _ = x.shape
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        bias = bias.to(q.dtype)  # (h, N, N), broadcast over windows
        if mask is not None:
            mask = self._check_mask(mask, num_windows, n)
            # Group windows by volume so that window i of every volume gets mask i.
            per_volume = mask.shape[0]
            q, k, v = (t.reshape(num_windows // per_volume, per_volume, *t.shape[1:]) for t in (q, k, v))
            mask = mask[None, :, None]  # (1, nW, 1, N, N)
        out = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, scale=self.scale)
        out = out.reshape(num_windows, self.num_heads, n, self.head_dim)
        return self.proj(merge_heads(out))

    @staticmethod
    def _check_mask(mask: torch.Tensor, num_windows: int, n: int) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(
                "mask must be boolean (nW, N, N), True where attending is allowed; "
                f"received {getattr(mask, 'dtype', type(mask).__name__)}"
            )
        if mask.ndim != 3 or mask.shape[1:] != (n, n) or num_windows % mask.shape[0]:
            raise ValueError(
                f"mask must have shape (nW, {n}, {n}) with nW dividing the {num_windows} windows of x; "
                f"received {tuple(mask.shape)}"
            )
        return mask
