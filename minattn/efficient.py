"""Exact attention without the full score matrix: the online softmax.

The explicit :func:`minattn.scaled_dot_product_attention` builds all Nq x Nk
scores at once. For N = 131,072 tokens that is 64 GiB in float32, so the
explicit path refuses (it raises ``AttentionMemoryError``). Yet the output of
one query needs only three running quantities, which can be updated one block
of keys at a time. This is the idea behind FlashAttention (Dao et al., 2022),
written here in plain PyTorch so that every step can be read.

The running-softmax derivation
------------------------------
Take one query row with scores s_1 .. s_N (scale, bias and mask applied) and
values v_1 .. v_N. The output is

    out = sum_j exp(s_j) v_j / sum_j exp(s_j).

Any constant m may be subtracted from every score: exp(s_j - m) = exp(s_j)
exp(-m), and the factor exp(-m) cancels between numerator and denominator.
Choosing m = max_j s_j keeps every exponent <= 0 (the stable softmax of
``minattn.softmax``). Now read the keys in blocks. After the blocks seen so
far, keep

    m   = the largest score seen so far,
    l   = sum_j exp(s_j - m)          (the normaliser),
    acc = sum_j exp(s_j - m) v_j      (the un-normalised output).

A new block with scores s_b arrives. Its maximum may be larger: the new
reference is m' = max(m, max_b s_b). The old sums were taken relative to m;
relative to m' each old term is

    exp(s_j - m') = exp(s_j - m) * exp(m - m'),

so the old sums are multiplied by alpha = exp(m - m') (which is <= 1; it is
exactly 1 when the maximum did not grow), and the block's own terms are added:

    p   = exp(s_b - m')
    l'  = alpha * l   + sum_b p
    acc'= alpha * acc + p @ v_b.

After the last block, out = acc / l. No approximation is made: the result is
the same softmax, only summed in a different order. Memory per step is one
(chunk x chunk) tile of scores instead of the whole (Nq x Nk) matrix.

Masked positions have score -inf and contribute exp(-inf) = 0. A row whose
keys so far are all masked has m = -inf, and exp(s - m) would be
exp(-inf - -inf) = exp(NaN). The code then shifts by 0 instead of m (any
shift is allowed; the terms are all zero anyway), and a row that never sees
an allowed key ends with l = 0 and returns zeros, as the explicit path does.

The code keeps scores in base 2. Since exp(s) = 2 ** (s * log2(e)), folding
the constant log2(e) into q (with the scale) turns every exp into exp2, which
a CPU computes in about half the time; at N = 32,768 the exponentials are
still about a fifth of the whole run. The running quantities are unchanged: m is
then the maximum in base-2 units, and alpha = 2 ** (m - m').
"""

from __future__ import annotations

import math

import torch

from ._validate import broadcast_shapes
from .attention import check_qkv, score_shape

# Half-precision inputs are accumulated in float32, as fused kernels and
# minattn.softmax do: a running sum over 100,000 keys in bfloat16 (8 bits of
# mantissa) would lose almost every small term.
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_LOG2_E = 1.0 / math.log(2.0)


def _check_chunk_size(chunk_size) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int (rows/columns per tile); received {chunk_size!r}")


def _output_batch(scores: torch.Size, v: torch.Tensor) -> torch.Size:
    """Batch axes of the output: those of the scores broadcast with those of v."""
    try:
        return broadcast_shapes(scores[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"v batch axes {tuple(v.shape[:-2])} do not broadcast with the scores' {tuple(scores[:-2])}"
        ) from None


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """View a mask or bias with fewer than two axes as ``(1, ..., Nk)`` so its last two axes can be sliced."""
    return t.reshape((1,) * (2 - t.ndim) + tuple(t.shape)) if t.ndim < 2 else t


def _tile(t: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """The ``(rows, cols)`` tile of a mask or bias ``(..., Nq or 1, Nk or 1)``.

    A size-1 axis is a broadcast axis: it holds the same entry for every
    query (or key), so it is kept whole rather than sliced (slicing it at an
    offset > 0 would give an empty tensor).
    """
    r = rows if t.shape[-2] != 1 else slice(None)
    c = cols if t.shape[-1] != 1 else slice(None)
    return t[..., r, c]


def memory_efficient_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Exact ``softmax(q k^T * scale + bias) v``, computed tile by tile.

    Same result and conventions as :func:`minattn.scaled_dot_product_attention`,
    but the (Nq, Nk) score matrix never exists: queries are taken ``chunk_size``
    rows at a time and, for each, keys ``chunk_size`` columns at a time, with a
    running maximum, normaliser and output rescaled as the module docstring
    derives. The memory guard is not consulted: the largest temporaries are a
    few ``(..., chunk_size, chunk_size)`` tiles (scores, their exponentials),
    plus running state and output that grow only linearly with Nq.

    Args:
        q: queries ``(..., Nq, d_k)``.
        k: keys ``(..., Nk, d_k)``.
        v: values ``(..., Nk, d_v)``. Leading batch/head axes of q, k, v,
            mask and bias broadcast against each other.
        mask: boolean, broadcastable to ``(..., Nq, Nk)``; True where a query
            may attend to a key.
        bias: additive float term broadcastable to ``(..., Nq, Nk)``.
        scale: multiplies the dot products; defaults to ``1 / sqrt(d_k)``.
        chunk_size: rows of queries and columns of keys per tile.

    Returns:
        ``(..., Nq, d_v)`` in q's dtype and device. A query with no allowed key
        gets a zero output, never NaN.

    Raises:
        ValueError: on shapes, dtypes or devices that do not fit together, a
            non-boolean mask, or a chunk_size that is not a positive int.

    Note:
        Autograd works through the loop, but it saves every tile for the
        backward pass, so training through this function costs O(Nq * Nk)
        memory again (FlashAttention avoids that by recomputing tiles in a
        hand-written backward). At large N, run inputs that require grad
        under ``torch.no_grad()`` when no gradient is needed.
    """
    check_qkv(q, k, v)
    shape = score_shape(q, k, mask, bias)  # (..., Nq, Nk): validated, never allocated
    _check_chunk_size(chunk_size)
    out_batch = _output_batch(shape, v)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])

    out_dtype = q.dtype
    work_dtype = torch.float32 if q.dtype in _LOW_PRECISION else q.dtype
    # Scores are kept in base 2: exp(s) = 2 ** (s * log2(e)), and a CPU
    # computes 2 ** x (exp2) in about half the time of exp(x), the one
    # elementwise step per score that costs as much as a matrix product.
    # Folding scale * log2(e) into q once costs Nq*d_k multiplications
    # instead of Nq*Nk: (q * c) @ k^T equals (q @ k^T) * c.
    q = q.to(work_dtype) * (scale * _LOG2_E)
    k, v = k.to(work_dtype), v.to(work_dtype)
    if mask is not None:
        mask = _as_matrix(mask.to(q.device))
    if bias is not None:
        bias = _as_matrix(bias.to(device=q.device, dtype=work_dtype))

    n_q, n_k, d_v = shape[-2], shape[-1], v.shape[-1]
    score_batch = shape[:-2]
    # Without autograd the tiles may be overwritten in place, which saves a
    # tile-sized allocation and a pass over memory for each step below.
    tracked = (q, k, v) if bias is None else (q, k, v, bias)
    in_place = not (torch.is_grad_enabled() and any(t.requires_grad for t in tracked))
    rows_may_be_empty = mask is not None or bias is not None
    product_batch = broadcast_shapes(q.shape[:-2], k.shape[:-2])  # batch axes of q @ k^T
    k_t = k.transpose(-2, -1)
    out_tiles = []
    buffer = None
    for q0 in range(0, n_q, chunk_size):
        rows = slice(q0, min(q0 + chunk_size, n_q))
        q_tile = q[..., rows, :]  # (..., r, d_k)
        n_rows = q_tile.shape[-2]
        # Running state of every query row in this tile (see module docstring).
        row_max = torch.full((*score_batch, n_rows, 1), float("-inf"), dtype=work_dtype, device=q.device)
        normaliser = torch.zeros((*score_batch, n_rows, 1), dtype=work_dtype, device=q.device)
        acc = torch.zeros((*out_batch, n_rows, d_v), dtype=work_dtype, device=q.device)

        for k0 in range(0, n_k, chunk_size):
            cols = slice(k0, min(k0 + chunk_size, n_k))
            k_tile_t = k_t[..., cols]
            if in_place and (n_rows, k_tile_t.shape[-1]) == (chunk_size, chunk_size):
                # Every full tile reuses one buffer: a fresh multi-megabyte
                # allocation per tile costs page faults worth ~4 % of the time.
                if buffer is None:
                    buffer = torch.empty((*product_batch, chunk_size, chunk_size), dtype=work_dtype, device=q.device)
                scores = torch.matmul(q_tile, k_tile_t, out=buffer)
            else:
                scores = q_tile @ k_tile_t  # (..., r, c): the only score tile alive
            if bias is not None:
                bias_tile = _tile(bias, rows, cols)  # may have more batch axes than q @ k^T
                if in_place and scores.shape == broadcast_shapes(scores.shape, bias_tile.shape):
                    scores = scores.add_(bias_tile, alpha=_LOG2_E)
                else:
                    scores = torch.add(scores, bias_tile, alpha=_LOG2_E)
            if mask is not None:
                scores = torch.where(_tile(mask, rows, cols), scores, float("-inf"))

            # The reference point m is a free choice (it cancels), so no gradient
            # needs to flow through it: detaching keeps autograd exact and
            # avoids differentiating through max() ties.
            new_max = torch.maximum(row_max, scores.detach().amax(dim=-1, keepdim=True))
            # Rows with every key so far masked have max -inf; shift them by 0
            # instead, so that no -inf - -inf = NaN appears (their terms are 0).
            # Without a mask or bias every score is finite and so is new_max.
            shift = torch.where(torch.isfinite(new_max), new_max, 0.0) if rows_may_be_empty else new_max
            # p = 2 ** (scores - shift): exp(s - m) in base-2 units, entries in [0, 1]
            p = scores.sub_(shift).exp2_() if in_place else torch.exp2(scores - shift)
            alpha = torch.exp2(row_max - shift)  # rescales the old sums; 2 ** -inf = 0 while still empty
            if in_place:
                normaliser.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                acc.mul_(alpha).add_(p @ v[..., cols, :])
            else:
                normaliser = alpha * normaliser + p.sum(dim=-1, keepdim=True)
                acc = alpha * acc + p @ v[..., cols, :]
            row_max = new_max

        # A row that never met an allowed key has normaliser 0 and acc 0:
        # dividing by 1 instead leaves the zero output the explicit path gives.
        safe = torch.where(normaliser > 0, normaliser, torch.ones_like(normaliser))
        out_tiles.append(acc / safe)

    if not out_tiles:  # Nq == 0
        return torch.zeros((*out_batch, 0, d_v), dtype=out_dtype, device=q.device)
    return torch.cat(out_tiles, dim=-2).to(out_dtype)
