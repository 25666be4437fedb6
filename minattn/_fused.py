"""The fast route of :class:`minattn.WindowAttention`: PyTorch's fused kernels, fed from a cache.

Nothing here changes a number. :class:`FusedWindowAttention` computes what the
explicit path of ``WindowAttention.attend`` computes (the tests compare both,
in inference and in training); it only gets there sooner:

- inference: the relative position bias and the shifted-window mask are folded
  into one additive tensor ``(1, nW * h, N, N)``, built once and reused while
  both stay the same, and handed to ``torch.nn.functional.scaled_dot_product_attention``;
- training on CPU: PyTorch's SDPA falls back to its math path when the additive
  mask needs gradients (the bias table learns), so :class:`ChunkedWindowAttention`
  runs a few windows at a time, forward and backward, so that a chunk's
  (N, N) scores and weights stay in the cache between the operations on them.
  Measured on a 2-core CPU, one block of SwinUNETR's first stage (125 windows
  of 343 tokens, 3 heads), attention forward and backward: 0.42-0.47 s with
  whole-tensor ops, 0.17 s a chunk at a time, regular and shifted blocks alike.
  (Recomputing the weights in the backward pass instead of keeping them, as
  FlashAttention does to save memory, took twice as long as keeping them.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Bytes of scores one chunk of windows may hold: a few MiB, so that a chunk's scores stay in the cache.
CHUNK_BYTES = 4 * 2**20


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
            return self._training_on_cpu(q, k, v, bias, mask, scale)
        num_windows, heads, n, head_dim = q.shape
        per_volume = 1 if mask is None else mask.shape[0]
        attn_mask = bias.to(q.dtype)[None] if mask is None else self._bias_and_mask(bias, mask, q.dtype)
        # Put each volume's windows and heads on one axis, so one (nW * h, N, N)
        # tensor serves every volume by broadcasting, without copies.
        q, k, v = (t.reshape(num_windows // per_volume, per_volume * heads, n, head_dim) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        return out.reshape(num_windows, heads, n, head_dim)

    def _training_on_cpu(self, q, k, v, bias, mask, scale):
        """Training on CPU: :func:`chunked_window_attention` on the windows grouped by volume."""
        num_windows, heads, n, head_dim = q.shape
        # Group windows by volume, so that window i of every volume takes mask i;
        # without a mask, every window is alike and all go on the window axis,
        # the one that is cut into chunks.
        per_volume = num_windows if mask is None else mask.shape[0]
        q, k, v = (t.reshape(num_windows // per_volume, per_volume, heads, n, head_dim) for t in (q, k, v))
        additive = None if mask is None else self._additive(mask, work_dtype(q.dtype))
        return chunked_window_attention(q, k, v, bias, additive, scale).reshape(num_windows, heads, n, head_dim)

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


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype :func:`chunked_window_attention` computes in: half precision is computed in float32,
    as torch.softmax does inside (the exponentials and their sums need the bits)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def chunked_window_attention(q, k, v, bias, additive_mask, scale: float) -> torch.Tensor:
    """:class:`ChunkedWindowAttention` in :func:`work_dtype`, returned in ``q``'s dtype.

    Args:
        q: ``(B, nW, h, Nq, d)``; k, v: ``(B, nW, h, N, d)``.
        bias: ``(h, Nq, N)``, shared by every window.
        additive_mask: ``(nW, Nq, N)`` of 0 and -inf in the work dtype, no row all -inf; or None.
        scale: multiplies the dot products.

    Returns:
        ``(B, nW, h, Nq, d)``.
    """
    work = work_dtype(q.dtype)
    out = ChunkedWindowAttention.apply((q * scale).to(work), k.to(work), v.to(work), bias.to(work), additive_mask)
    return out.to(q.dtype)


class ChunkedWindowAttention(torch.autograd.Function):
    """``softmax(q k^T + bias + mask) v`` per window, a chunk of windows at a time, with its own backward.

    ``apply(q, k, v, bias, additive_mask)``:
        q: ``(B, nW, h, Nq, d)``, already multiplied by the scale; k, v: ``(B, nW, h, N, d)``
        (Nq < N when only some of a window's tokens are queried).
        bias: ``(h, Nq, N)``, shared by every window (its gradient is summed over them).
        additive_mask: ``(nW, Nq, N)`` of 0 and -inf, no row all -inf; or None.
    Returns ``(B, nW, h, Nq, d)``.

    The forward pass keeps each chunk's weights P for the backward pass, as
    autograd would. With dO the incoming gradient, the softmax's backward is
    dS = P * (dO v^T - rowsum(dO * O)); then dq = dS k, dk = dS^T q,
    dv = P^T dO, and the bias gets dS summed over volumes and windows.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, additive_mask):
        chunk = _windows_per_chunk(q, k)
        out = v.new_empty((*q.shape[:-1], v.shape[-1]))
        weights = []
        for windows in _chunks(q.shape[1], chunk):
            weights.append(torch.softmax(_scores(q, k, bias, additive_mask, windows), dim=-1))
            out[:, windows] = weights[-1] @ v[:, windows]
        ctx.save_for_backward(q, k, v, out, *weights)
        ctx.chunk, ctx.bias_shape = chunk, bias.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, *weights = ctx.saved_tensors
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_bias = q.new_zeros(ctx.bias_shape) if ctx.needs_input_grad[3] else None
        row_dot = (grad_out * out).sum(dim=-1, keepdim=True)  # rowsum(dO * O), (B, nW, h, N, 1)
        for chunk_weights, windows in zip(weights, _chunks(q.shape[1], ctx.chunk)):
            grad_o = grad_out[:, windows]
            grad_v[:, windows] = chunk_weights.transpose(-2, -1) @ grad_o
            grad_scores = (grad_o @ v[:, windows].transpose(-2, -1)).sub_(row_dot[:, windows]).mul_(chunk_weights)
            if grad_bias is not None:
                grad_bias += grad_scores.sum(dim=(0, 1))
            grad_q[:, windows] = grad_scores @ k[:, windows]
            grad_k[:, windows] = grad_scores.transpose(-2, -1) @ q[:, windows]
        return grad_q, grad_k, grad_v, grad_bias, None


def _windows_per_chunk(q: torch.Tensor, k: torch.Tensor) -> int:
    """Windows per chunk: as many as keep the chunk's scores ``(B, chunk, h, Nq, N)`` under :data:`CHUNK_BYTES`."""
    volumes, _, heads, queries, _ = q.shape
    return max(1, CHUNK_BYTES // (volumes * heads * queries * k.shape[-2] * q.element_size()))


def _chunks(num_windows: int, chunk: int):
    return (slice(start, min(start + chunk, num_windows)) for start in range(0, num_windows, chunk))


def _scores(q, k, bias, additive_mask, windows: slice) -> torch.Tensor:
    """``q k^T + bias (+ mask)`` for a chunk of windows: ``(B, chunk, h, N, N)``, a new tensor."""
    scores = q[:, windows] @ k[:, windows].transpose(-2, -1)
    scores += bias
    if additive_mask is not None:
        scores += additive_mask[windows, None]  # (chunk, 1, N, N): the same mask for every head
    return scores
