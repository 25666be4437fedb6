"""The softmax, written out so that nothing about it is hidden.

softmax(x)_i = exp(x_i) / sum_j exp(x_j). Taken literally, exp(1e4) overflows
to inf in every floating-point type. Subtracting the row maximum first changes
nothing mathematically (the factor exp(-max) cancels between numerator and
denominator) but keeps every exponent <= 0, so every exp lies in [0, 1].
"""

from __future__ import annotations

import torch

# Half-precision types have few mantissa bits and a small range; the
# exponentials and their sum are accumulated in float32, as fused kernels do.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``.

    Args:
        x: logits of any shape and floating dtype; entries may be ``-inf``
            (a masked position gets weight 0).
        dim: the axis that sums to one.

    Returns:
        A tensor of ``x``'s shape, dtype and device whose slices along ``dim``
        are non-negative and sum to 1. A slice whose entries are all ``-inf``
        (nothing allowed) gives all zeros rather than NaN.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"softmax needs a floating-point tensor; received {getattr(x, 'dtype', type(x).__name__)}")
    work = x.float() if x.dtype in _LOW_PRECISION else x
    row_max = work.amax(dim=dim, keepdim=True)
    # A row of only -inf has max -inf; shifting by it would give -inf - -inf = NaN.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exps = torch.exp(work - row_max)
    total = exps.sum(dim=dim, keepdim=True)
    # Rows with nothing allowed have total 0: divide by 1 instead, leaving zeros.
    weights = exps / torch.where(total > 0, total, torch.ones_like(total))
    return weights.to(x.dtype)
