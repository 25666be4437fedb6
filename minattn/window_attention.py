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

from ._fused import FusedWindowAttention
from ._real_queries import RealQueryAttention
from ._shortcuts import has_forward_hooks, needs_graph
from ._validate import as_size_tuple, spatial_ndim
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
        fused: True to attend with PyTorch's fused
            ``torch.nn.functional.scaled_dot_product_attention`` (bias and mask
            folded into one additive tensor, cached while the table is
            unchanged; see ``minattn._fused``); False for the explicit,
            first-principles :func:`minattn.scaled_dot_product_attention` that
            the course reads line by line. Both give the same numbers. None
            (default) picks the fused path, the faster one wherever it was
            measured. A mask in which some query may attend to no key always
            takes the explicit path, which gives that query zeros, not NaN.

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

    def __init__(self, dim: int, window_size, num_heads: int, qkv_bias: bool = True, fused: bool | None = None):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        ndim = spatial_ndim(window_size)
        self.window_size = as_size_tuple(window_size, ndim, "window_size")
        self.dim = dim
        self.num_heads = num_heads
        # The head's width, not the model's: each head's dot products sum head_dim terms.
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.position_bias = RelativePositionBias(self.window_size, num_heads)
        self.shrunk_window_index = "geometric"
        self.fused = True if fused is None else bool(fused)
        self._fused_route = FusedWindowAttention()  # holds the tensors the fused path reuses
        self._grid_route = RealQueryAttention()  # the same for attend_grid
        # Set record_weights = True to keep the attention weights of the last
        # call in last_weights, (B * nW, heads, N, N), for attention maps and
        # rollout; recording takes the explicit path, which computes them.
        self.record_weights = False
        self.last_weights: torch.Tensor | None = None

    def bias_for(self, window_size=None) -> torch.Tensor:
        """Relative position bias ``(heads, N, N)`` for a window of ``window_size``.

        ``window_size`` defaults to the module's own; a smaller one (a window
        shrunk to fit a small input) reuses the same table.
        """
        if window_size is None or tuple(window_size) == self.window_size:
            return self.position_bias()
        return self.position_bias(self.bias_index(window_size))

    def bias_index(self, window_size=None) -> torch.Tensor:
        """Long ``(N, N)``: the row of ``position_bias.table`` that each (query, key) pair of a window reads.

        ``window_size`` as in :meth:`bias_for`, whose bias is ``table[index]``
        with heads moved first.
        """
        if window_size is None or tuple(window_size) == self.window_size:
            return self.position_bias.index
        window = as_size_tuple(window_size, len(self.window_size), "window_size")
        device = self.position_bias.table.device
        if self.shrunk_window_index == "monai":
            return monai_sliced_index(math.prod(window), self.window_size, device=device)
        return relative_position_index(window, table_window_size=self.window_size, device=device)

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
        n = x.shape[1]
        expected_n = math.prod(self.window_size if window_size is None else window_size)
        if n != expected_n:
            raise ValueError(
                f"x holds {n} tokens per window (dim 1) but the window {window_size or self.window_size} "
                f"holds {expected_n}; pass window_size= for a shrunk window"
            )
        return self.attend(x, self.bias_for(window_size), mask)

    def attend(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention within windows, given the position bias to add to the scores.

        Args:
            x: ``(B * nW, N, C)`` windows, batch-major.
            bias: ``(heads, N, N)``, shared by every window.
            mask: optional boolean ``(nW, N, N)``, True = may attend.

        Returns:
            ``(B * nW, N, C)``. Two routes give the same numbers: PyTorch's
            fused kernels (``fused``, see ``minattn._fused``), or the explicit
            attention of the lessons, which builds every score and so can keep
            the weights.
        """
        num_windows, n, _ = x.shape
        if mask is not None:
            mask = self._check_mask(mask, num_windows, n)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if self.fused and not self.record_weights and self._fused_route.accepts(mask, q.dtype):
            out = self._fused_route(q, k, v, bias, mask, self.scale)  # the same numbers, sooner
        else:  # the explicit path
            bias = bias.to(q.dtype)  # (h, N, N), broadcast over windows
            if mask is not None:
                # Group windows by volume so that window i of every volume gets mask i.
                q, k, v = (rearrange(t, "(b w) h n d -> b w h n d", w=mask.shape[0]) for t in (q, k, v))
                mask = mask[None, :, None]  # (1, nW, 1, N, N)
            out, weights = scaled_dot_product_attention(
                q, k, v, mask=mask, bias=bias, scale=self.scale, return_weights=True
            )
            if self.record_weights:
                self.last_weights = weights.reshape(num_windows, self.num_heads, n, n)
            out = out.reshape(num_windows, self.num_heads, n, self.head_dim)
        return self.proj(merge_heads(out))

    def attend_grid(self, x: torch.Tensor, layout, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """Window attention over a whole grid, computing only the grid's own queries; None where it does not apply.

        The numbers of pad, shift, partition, :meth:`forward` and undo, without
        computing the padded tokens' queries (see ``minattn._real_queries``):
        inference on any device, training on the CPU.

        Args:
            x: ``(B, *layout.grid, C)``, already normalised.
            layout: the grid's :class:`minattn.WindowLayout`.
            mask: boolean ``(nW, N, N)`` for the padded grid, or None.

        Returns:
            ``(B, *layout.grid, C)``; None, for the caller to take the windowed
            route, on the explicit path, when weights are recorded, when the
            module has forward hooks (which expect it to be called on windows),
            in training off the CPU, or when a real query may attend to no key.
        """
        training = needs_graph(self, x)
        # Hooks on this module expect it to be called on windows (attention maps, the voxel tool): let them.
        hooked = has_forward_hooks(self)
        if not self.fused or self.record_weights or hooked or not self._grid_route.applies(x, training):
            return None
        layout.check_grid(x)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have {self.dim} channels (last axis); received shape {tuple(x.shape)}")
        if mask is not None:
            mask = self._check_mask(mask, layout.num_windows, layout.tokens_per_window)
        return self._grid_route(x, self, layout, mask, training)

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
