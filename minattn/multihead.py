"""Multi-head attention: several smaller attentions side by side.

The model width C is cut into ``h`` heads of ``C / h`` features. Each head
projects its own queries, keys and values and attends on its own; the heads'
outputs are laid side by side again and mixed by an output projection. The
projections are C x C whatever ``h`` is, so the parameter count does not
depend on the number of heads: heads divide the work, they do not add to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._validate import check_int
from .attention import scaled_dot_product_attention


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, C)`` -> ``(B, h, N, C/h)``: head ``i`` takes features ``i*C/h`` to ``(i+1)*C/h``."""
    return rearrange(x, "b n (h d) -> b h n d", h=num_heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, h, N, d)`` -> ``(B, N, h*d)``, the inverse of :func:`split_heads`."""
    return rearrange(x, "b h n d -> b n (h d)")


def check_heads(dim: int, num_heads: int) -> int:
    """Validate ``dim`` and ``num_heads``; return the head dimension."""
    for name, value in (("dim", dim), ("num_heads", num_heads)):
        check_int(value, name, minimum=1)
    if dim % num_heads:
        raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads} (each head takes dim / num_heads features)")
    return dim // num_heads


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, batch-first.

    Args:
        dim: model width C.
        num_heads: heads h; C must be divisible by h.
        qkv_bias: learn biases for the q, k, v projections.

    Attributes:
        in_proj_weight: ``(3C, C)``; rows ``0:C`` project queries, ``C:2C``
            keys, ``2C:3C`` values (the layout of ``nn.MultiheadAttention``).
        in_proj_bias: ``(3C,)`` or None.
        out_proj: ``nn.Linear(C, C)`` mixing the merged heads.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if qkv_bias else None
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        rows = slice(part * self.dim, (part + 1) * self.dim)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        return F.linear(x, self.in_proj_weight[rows], bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ):
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, Nq, C)``.
            key: ``(B, Nk, C)``; omitted for self-attention (``key = query``).
            value: ``(B, Nk, C)``; defaults to ``key``.
            mask: boolean, broadcastable to ``(B, h, Nq, Nk)``, True = allowed.
                A ``(B, Nq, Nk)`` mask is applied to every head.
            return_weights: also return the per-head weights ``(B, h, Nq, Nk)``.

        Returns:
            ``(B, Nq, C)``, or ``(output, weights)``.
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[-1] != self.dim:
                raise ValueError(
                    f"{name} must have shape (B, N, {self.dim}); received {tuple(getattr(t, 'shape', ()))}"
                )
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"key and value must have the same (B, N); received {tuple(key.shape)} and {tuple(value.shape)}")
        if mask is not None and isinstance(mask, torch.Tensor) and mask.ndim == 3:
            mask = mask[:, None]  # one mask per batch item, shared by the heads
        q = split_heads(self._project(query, 0), self.num_heads)
        k = split_heads(self._project(key, 1), self.num_heads)
        v = split_heads(self._project(value, 2), self.num_heads)
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
        out = self.out_proj(merge_heads(out))
        return (out, weights) if return_weights else out
