"""The fast route of :class:`minattn.WindowAttention`: PyTorch's fused kernels, fed from a cache.

Nothing here changes a number. :class:`FusedWindowAttention` computes what the
explicit path of ``WindowAttention.attend`` computes (the tests compare both,
in inference and in training); it only gets there sooner:

- inference: the relative position bias and the shifted-window mask are folded
  into one additive tensor ``(1, nW * h, N, N)``, built once and reused while
  both stay the same, and handed to ``torch.nn.functional.scaled_dot_product_attention``;
- training on CPU: PyTorch's SDPA falls back to its math path when the additive
  mask needs gradients, so plain ops are used instead, with the bias and the
  mask added in place to the one score tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _version(t: torch.Tensor) -> int | None:
    """In-place modification counter of ``t``; None for inference-mode tensors, which have none."""
    try:
        return t._version
    except RuntimeError:
        return None


class FusedWindowAttention:
    """Window attention through PyTorch's fused kernels, with the tensors one layer reuses between calls.

    One instance per :class:`minattn.WindowAttention`. The mask is recognised by
    identity and in-place version (the shifted-window mask of a grid is built
    once and passed again), the bias by value (it is small, and the optimiser
    changes it in place).
    """

    def __init__(self):
        self._blocked: tuple | None = None  # (mask, its version, additive mask)
        self._combined: tuple | None = None  # (mask, its version, bias, bias + additive mask)

    def accepts(self, mask: torch.Tensor | None, dtype: torch.dtype) -> bool:
        """False when some query of ``mask`` may attend to no key.

        Fused kernels give NaN for such a query (a softmax of nothing but
        -inf); the explicit path gives zeros, so it takes those masks.
        """
        return mask is None or self._additive(mask, dtype) is not None

    def __call__(self, q, k, v, bias: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
        """``softmax(q k^T * scale + bias, masked) v`` for every window.

        Args:
            q, k, v: ``(B * nW, h, N, d)``, windows batch-major.
            bias: relative position bias ``(h, N, N)``, shared by every window.
            mask: boolean ``(nW, N, N)``, True = may attend, window i of every
                volume taking mask i; or None. :meth:`accepts` must hold.
            scale: multiplies the dot products.

        Returns:
            ``(B * nW, h, N, d)``.
        """
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, bias))
        if training and q.device.type == "cpu":
            return self._plain_ops(q, k, v, bias, mask, scale)
        num_windows, heads, n, head_dim = q.shape
        per_volume = 1 if mask is None else mask.shape[0]
        attn_mask = bias.to(q.dtype)[None] if mask is None else self._bias_and_mask(bias, mask, q.dtype)
        # Put each volume's windows and heads on one axis, so one (nW * h, N, N)
        # tensor serves every volume by broadcasting, without copies.
        q, k, v = (t.reshape(num_windows // per_volume, per_volume * heads, n, head_dim) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        return out.reshape(num_windows, heads, n, head_dim)

    def _plain_ops(self, q, k, v, bias, mask, scale):
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
        scores = (q * scale) @ k.transpose(-2, -1)  # (B, nW, h, N, N)
        scores.add_(bias.to(q.dtype))  # matmul's backward needs its inputs only, so in place is safe
        if mask is not None:
            scores.add_(self._additive(mask, q.dtype)[:, None])  # (nW, 1, N, N)
        out = torch.softmax(scores, dim=-1) @ v
        return out.reshape(num_windows, heads, n, head_dim)

    def _additive(self, mask, dtype):
        """The boolean mask as an additive ``(nW, N, N)`` tensor, 0 or -inf, cached per mask; None if a row is empty."""
        cached = self._blocked
        if cached is not None and cached[0] is mask and cached[1] == _version(mask) and cached[2].dtype == dtype:
            return cached[2]
        if not bool(mask.any(-1).all()):
            return None
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
        self._blocked = (mask, _version(mask), additive)
        return additive

    def _bias_and_mask(self, bias, mask, dtype):
        """Bias and mask as one contiguous additive tensor ``(1, nW * h, N, N)`` for the fused kernel.

        It depends only on the bias and the mask, so in inference it is built
        once and reused while both stay the same; when autograd must reach
        the table it is rebuilt so gradients flow. (A non-contiguous mask
        slows SDPA down, hence the copy.)
        """
        bias = bias.to(dtype)
        reusable = not torch.is_grad_enabled() or not bias.requires_grad
        cached = self._combined
        if reusable and cached is not None:
            cached_mask, version, cached_bias, combined = cached
            if cached_mask is mask and version == _version(mask) and torch.equal(cached_bias, bias):
                return combined
        combined = (bias[None] + self._additive(mask, dtype)[:, None]).reshape(1, -1, *mask.shape[1:]).contiguous()
        # A copy of the bias: a caller's bias changed in place must not change the cached one too.
        self._combined = (mask, _version(mask), bias.detach().clone(), combined) if reusable else None
        return combined
