"""Scaled dot-product attention, built from its definition.

    Attention(Q, K, V) = softmax(Q K^T * scale + bias) V,   scale = 1 / sqrt(d_k)

Every query row is compared with every key row (the score matrix), the scores
become weights with a softmax, and the output is the weighted sum of values.
This explicit version keeps the whole score matrix, which is what makes it
easy to inspect and what makes it quadratic in memory.
"""

from __future__ import annotations

import math

import torch

from ._validate import broadcast_shapes
from .memory import check_score_matrix_fits
from .softmax import softmax


def _broadcast(shape_a, shape_b, what: str) -> torch.Size:
    try:
        return broadcast_shapes(shape_a, shape_b)
    except ValueError:
        raise ValueError(f"{what}: shapes {tuple(shape_a)} and {tuple(shape_b)} do not broadcast") from None


def _check_device(t: torch.Tensor, q: torch.Tensor, name: str) -> None:
    if t.device != q.device:
        raise ValueError(f"{name} is on {t.device} but q, k and v are on {q.device}; move it with .to(q.device)")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Check that q ``(..., Nq, d_k)``, k ``(..., Nk, d_k)`` and v ``(..., Nk, d_v)`` fit together."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor; received {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (..., tokens, features); received shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point; received dtype {t.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last (feature) dimension d_k; received q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of tokens (dim -2); received k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share a dtype; received {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device; received {q.device}, {k.device}, {v.device}")


def score_shape(q, k, mask=None, bias=None) -> torch.Size:
    """Shape of the score matrix ``(..., Nq, Nk)`` after broadcasting q, k, mask and bias."""
    batch = _broadcast(q.shape[:-2], k.shape[:-2], "q and k batch axes")
    shape = torch.Size((*batch, q.shape[-2], k.shape[-2]))
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(
                "mask must be a boolean tensor, True where a query may attend to a key; "
                f"received {getattr(mask, 'dtype', type(mask).__name__)}. Pass additive float terms as bias="
            )
        shape = _broadcast(shape, mask.shape, f"mask must broadcast to the scores {tuple(shape)}")
        _check_device(mask, q, "mask")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
            raise ValueError(f"bias must be a floating-point tensor; received {getattr(bias, 'dtype', type(bias))}")
        shape = _broadcast(shape, bias.shape, f"bias must broadcast to the scores {tuple(shape)}")
        _check_device(bias, q, "bias")
    return shape


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    return_weights: bool = False,
):
    """Explicit ``softmax(q k^T * scale + bias) v`` with an optional boolean mask.

    Args:
        q: queries ``(..., Nq, d_k)``.
        k: keys ``(..., Nk, d_k)``.
        v: values ``(..., Nk, d_v)``.
        mask: boolean, broadcastable to ``(..., Nq, Nk)``; True where attending
            is allowed (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
        bias: additive float term broadcastable to ``(..., Nq, Nk)``, e.g. a
            relative position bias.
        scale: multiplies the dot products; defaults to ``1 / sqrt(d_k)``.
        return_weights: also return the attention weights.

    Returns:
        ``out`` of shape ``(..., Nq, d_v)``, or ``(out, weights)`` with weights
        ``(..., Nq, Nk)``. A query with no allowed key gets zero weights and a
        zero output, never NaN.

    Raises:
        ValueError: on shapes, dtypes or devices that do not fit together.
        AttentionMemoryError: when the score matrix would exceed the memory
            budget (see :func:`minattn.set_memory_budget`).
    """
    check_qkv(q, k, v)
    shape = score_shape(q, k, mask, bias)
    check_score_matrix_fits(tuple(shape), q.element_size())
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])

    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Nq, Nk): one similarity per query-key pair
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        # torch.where broadcasts both ways, so a mask may carry batch axes the scores lack.
        scores = torch.where(mask, scores, float("-inf"))
    weights = softmax(scores, dim=-1)
    out = weights @ v
    return (out, weights) if return_weights else out
