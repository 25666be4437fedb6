"""``attention``: exact attention by the fastest route that fits in memory (exported as ``minattn.attention``).

The lessons build :func:`minattn.scaled_dot_product_attention` (explicit, the
whole score matrix, refused past the memory budget) and
:func:`minattn.memory_efficient_attention` (tiled, an online softmax). For
everyday use, :func:`attention` keeps the explicit one's semantics and hands
the work to PyTorch's fused kernels, or to the tiled path where those would
hold more than the budget allows.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from ._validate import broadcast_shapes
from .attention import check_qkv, score_shape
from .efficient import _output_batch, memory_efficient_attention
from .memory import get_memory_budget


def _fold_to_4d(t: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """View ``t`` ``(..., a, b)``, whose batch axes broadcast to ``batch``, as 4-D ``(B, H, a, b)``.

    PyTorch's fused kernels only take 4-D ``(batch, heads, tokens, features)``
    inputs; anything else silently goes to the math path, which builds the full
    score matrix. Missing leading axes become size 1 (a free view); more than
    two batch axes are merged into the first (a copy only when they differ
    from 1).
    """
    if t.ndim == 4 and len(batch) == 2:
        return t  # already (B or 1, H or 1, a, b): the common case, at no cost
    t = t.reshape((1,) * (len(batch) + 2 - t.ndim) + tuple(t.shape))  # pad leading 1s
    if len(batch) <= 2:
        return t.reshape((1,) * (2 - len(batch)) + tuple(t.shape))
    lead = t.shape[:-3]
    if all(s == 1 for s in lead):
        return t.reshape(1, *t.shape[-3:])
    return t.expand(*batch[:-1], *t.shape[-3:]).reshape(-1, *t.shape[-3:])


def _any_along_keys(allowed: torch.Tensor) -> torch.Tensor:
    """``allowed.any(dim=-1, keepdim=True)`` for a boolean ``allowed``: which queries have a key.

    Read as bytes, the same answer is their maximum, which PyTorch computes
    ~20x faster on a CPU than the boolean ``any`` (25 us against 600 us for a
    1,024 x 1,024 mask, measured); that difference was most of what a masked
    call added to torch's own SDPA.
    """
    if allowed.shape[-1] == 0:  # no keys at all: max() of nothing is an error, any() is False
        return allowed.any(dim=-1, keepdim=True)
    return allowed.view(torch.uint8).amax(dim=-1, keepdim=True).bool()


def _expand_to(t: torch.Tensor, B: int, H: int) -> torch.Tensor:
    """``t`` ``(B or 1, H or 1, a, b)`` as ``(B, H, a, b)``; ``t`` itself when it already is."""
    return t if t.shape[:2] == (B, H) else t.expand(B, H, -1, -1)


def _four_d_batch(batch: torch.Size) -> tuple[int, int]:
    """The (B, H) that :func:`_fold_to_4d` gives for output batch axes ``batch``."""
    if len(batch) <= 2:
        return tuple((1,) * (2 - len(batch)) + tuple(batch))
    return math.prod(batch[:-1]), batch[-1]


def _fused_only():
    """A context that lets torch's SDPA use fused kernels only, never its math path.

    Returns None on PyTorch versions without ``torch.nn.attention.sdpa_kernel``.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return None
    names = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
    return sdpa_kernel([getattr(SDPBackend, n) for n in names if hasattr(SDPBackend, n)])


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` by the fastest route that fits in memory.

    The semantics of :func:`minattn.scaled_dot_product_attention` (same
    shapes, broadcasting, mask convention and zero output for a query with no
    allowed key), returning only the output. The route:

    * score matrix within the memory budget (:func:`minattn.get_memory_budget`):
      PyTorch's ``torch.nn.functional.scaled_dot_product_attention``, which
      picks a fused kernel when one applies and its math path otherwise;
    * over budget, with a mask or bias, on CPU: :func:`memory_efficient_attention`
      (PyTorch's CPU SDPA may build the whole matrix from a mask);
    * over budget otherwise: PyTorch's SDPA restricted to fused kernels (they
      never hold the whole matrix); if none applies (dtype, device, a mask
      that needs gradients...), :func:`memory_efficient_attention`.

    The explicit path's memory guard is never hit.

    Args:
        q: queries ``(..., Nq, d_k)``.
        k: keys ``(..., Nk, d_k)``.
        v: values ``(..., Nk, d_v)``.
        mask: boolean, broadcastable to ``(..., Nq, Nk)``; True where attending
            is allowed (also PyTorch's convention for a boolean ``attn_mask``).
        bias: additive float term broadcastable to ``(..., Nq, Nk)``.
        scale: multiplies the dot products; defaults to ``1 / sqrt(d_k)``.

    Returns:
        ``(..., Nq, d_v)``, q's dtype and device.
    """
    check_qkv(q, k, v)
    shape = score_shape(q, k, mask, bias)
    out_batch = _output_batch(shape, v)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])

    # The same measure as the explicit path's guard: one score matrix in q's dtype.
    over_budget = math.prod(shape) * q.element_size() > get_memory_budget()
    has_mask = mask is not None or bias is not None
    if over_budget and has_mask and q.device.type == "cpu":
        return memory_efficient_attention(q, k, v, mask=mask, bias=bias, scale=scale)
    if over_budget and mask is not None and bias is not None:
        # Merging them below allocates their broadcast shape, e.g. (B, heads, Nq, Nk)
        # from a (B, 1, Nq, Nk) mask and a (heads, Nq, Nk) bias: that can be the
        # full score matrix's size again.
        merged = math.prod(broadcast_shapes(mask.shape, bias.shape)) * q.element_size()
        if merged > get_memory_budget():
            return memory_efficient_attention(q, k, v, mask=mask, bias=bias, scale=scale)

    # One attn_mask for torch: boolean with the same convention, or a float
    # bias with -inf where the mask forbids.
    if bias is not None:
        bias = bias.to(device=q.device, dtype=q.dtype)
        attn_mask = bias if mask is None else torch.where(mask.to(q.device), bias, float("-inf"))
        # Rows with nothing allowed: all -inf (from the mask or the bias itself).
        row_ok = _any_along_keys(attn_mask > float("-inf"))
    elif mask is not None:
        attn_mask = mask.to(q.device)
        row_ok = _any_along_keys(attn_mask)
    else:
        attn_mask = row_ok = None

    # Fused kernels need q, k, v as 4-D (batch, heads, tokens, features) with
    # equal batch and head sizes; fold the broadcast batch axes into that form.
    batch = out_batch
    B, H = _four_d_batch(batch)
    q4, k4, v4 = (_expand_to(_fold_to_4d(t, batch), B, H) for t in (q, k, v))
    m4 = None if attn_mask is None else _fold_to_4d(attn_mask, batch)
    if m4 is not None and (m4.shape[-1] != k4.shape[-2] or m4.stride(-1) != 1):
        # CUDA kernels need the mask's key axis laid out in memory: a mask that
        # broadcasts over keys (one value per query) is written out along it.
        m4 = m4.expand(*m4.shape[:-1], k4.shape[-2]).contiguous()

    if not over_budget:
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=m4, scale=scale)
    else:
        fused_only = _fused_only()
        if fused_only is None:  # no way to forbid the math path on this torch version
            return memory_efficient_attention(q, k, v, mask=mask, bias=bias, scale=scale)
        try:
            with fused_only, warnings.catch_warnings():
                # A refused fused kernel warns why, then raises; we fall back instead.
                warnings.simplefilter("ignore", UserWarning)
                out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=m4, scale=scale)
        except RuntimeError:  # "No available kernel": dtype, device, mask needing grad...
            return memory_efficient_attention(q, k, v, mask=mask, bias=bias, scale=scale)

    out = out.reshape(*batch, q.shape[-2], v.shape[-1])
    if row_ok is not None:
        # PyTorch may return NaN for a query with no allowed key; the course's
        # convention is a zero output.
        out = torch.where(row_ok, out, 0.0)
    return out
