"""Multi-head self-attention inside windows, with relative position bias.

The input is a batch of windows ``(B * nW, N, C)`` from :func:`window_partition`.
Every window attends only to itself; the relative position bias tells the
heads where each key sits relative to the query; an optional mask (for
shifted windows) forbids pairs that came from different regions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._validate import as_size_tuple, spatial_ndim
from .attention import scaled_dot_product_attention
from .multihead import check_heads, merge_heads
from .position import RelativePositionBias, monai_sliced_index, relative_position_index


def _version(t: torch.Tensor) -> int | None:
    """In-place modification counter of ``t``; None for inference-mode tensors, which have none."""
    try:
        return t._version
    except RuntimeError:
        return None


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
            unchanged); False for the explicit, first-principles
            :func:`minattn.scaled_dot_product_attention` that the course reads
            line by line. Both give the same numbers. None (default) picks the
            fused path, the faster one wherever it was measured.

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
        self._cached_attn_mask: tuple | None = None
        self._cached_blocked: tuple | None = None
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
        if mask is not None:
            mask = self._check_mask(mask, num_windows, n)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        attend = self._attend_fused if self.fused and not self.record_weights else self._attend_explicit
        return self.proj(merge_heads(attend(q, k, v, bias, mask)))

    def _attend_explicit(self, q, k, v, bias, mask):
        """The course's path: minattn's explicit attention. q, k, v: ``(B * nW, h, N, d)``."""
        num_windows, heads, n, head_dim = q.shape
        bias = bias.to(q.dtype)  # (h, N, N), broadcast over windows
        if mask is not None:
            # Group windows by volume so that window i of every volume gets mask i.
            per_volume = mask.shape[0]
            q, k, v = (t.reshape(num_windows // per_volume, per_volume, *t.shape[1:]) for t in (q, k, v))
            mask = mask[None, :, None]  # (1, nW, 1, N, N)
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, scale=self.scale, return_weights=True)
        if self.record_weights:
            self.last_weights = weights.reshape(num_windows, heads, n, n)
        return out.reshape(num_windows, heads, n, head_dim)

    def _attend_fused(self, q, k, v, bias, mask):
        """The same attention through PyTorch's fused kernels. q, k, v: ``(B * nW, h, N, d)``."""
        if mask is not None and self._blocked(mask, q.dtype) is None:
            return self._attend_explicit(q, k, v, bias, mask)  # only the explicit path gives zeros there
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, bias))
        if training and q.device.type == "cpu":
            return self._attend_cpu_training(q, k, v, bias, mask)
        num_windows, heads, n, head_dim = q.shape
        per_volume = 1 if mask is None else mask.shape[0]
        attn_mask = bias.to(q.dtype)[None] if mask is None else self._additive_mask(bias, mask, q.dtype)
        # Put each volume's windows and heads on one axis, so one (nW * h, N, N)
        # tensor serves every volume by broadcasting, without copies.
        q, k, v = (t.reshape(num_windows // per_volume, per_volume * heads, n, head_dim) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return out.reshape(num_windows, heads, n, head_dim)

    def _attend_cpu_training(self, q, k, v, bias, mask):
        """Training on CPU: plain ops with the bias and mask added in place.

        With a mask that needs gradients, CPU SDPA runs its math path plus
        guards for all-masked rows; adding the bias and the cached mask in
        place to the one score tensor saves two N^2 allocations per window.
        """
        num_windows, heads, n, head_dim = q.shape
        per_volume = 1 if mask is None else mask.shape[0]
        # Group windows by volume first, so the scores are born in that shape:
        # an in-place add on a *view* of them would make autograd copy the
        # whole N^2 gradient in the backward pass.
        q, k, v = (t.reshape(num_windows // per_volume, per_volume, heads, n, head_dim) for t in (q, k, v))
        scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, nW, h, N, N)
        scores.add_(bias.to(q.dtype))  # matmul's backward needs its inputs only, so in place is safe
        if mask is not None:
            scores.add_(self._blocked(mask, q.dtype)[:, None])  # (nW, 1, N, N)
        out = torch.softmax(scores, dim=-1) @ v
        return out.reshape(num_windows, heads, n, head_dim)

    def _blocked(self, mask, dtype):
        """The boolean mask as an additive ``(nW, N, N)`` tensor, 0 or -inf, cached per mask; None if a row is empty.

        A query with no allowed key would get NaN from a softmax of all -inf,
        so such masks are left to the explicit path, which gives zeros.
        """
        cached = self._cached_blocked
        if cached is not None and cached[0] is mask and cached[1] == _version(mask) and cached[2].dtype == dtype:
            return cached[2]
        if not bool(mask.any(-1).all()):
            return None
        blocked = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
        self._cached_blocked = (mask, _version(mask), blocked)
        return blocked

    def _additive_mask(self, bias, mask, dtype):
        """Bias and mask as one contiguous additive tensor ``(1, nW * h, N, N)`` for the fused kernel.

        It depends only on the bias and the mask, so in inference it is built
        once and reused while both stay the same (checked by identity and
        version for the mask, by value for the bias, which is small); when
        autograd must reach the table it is rebuilt so gradients flow.
        """
        bias = bias.to(dtype)
        reusable = not torch.is_grad_enabled() or not bias.requires_grad
        cached = self._cached_attn_mask
        if reusable and cached is not None:
            cached_mask, version, cached_bias, combined = cached
            if cached_mask is mask and version == _version(mask) and torch.equal(cached_bias, bias):
                return combined
        combined = (bias[None] + self._blocked(mask, dtype)[:, None]).reshape(1, -1, *mask.shape[1:]).contiguous()
        self._cached_attn_mask = (mask, _version(mask), bias.detach(), combined) if reusable else None
        return combined

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
