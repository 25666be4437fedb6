"""What attention costs, as plain integers.

These calculators reproduce the course's figures exactly, e.g.::

    >>> num_tokens((256, 256, 96), 8)
    12288
    >>> attention_matrix_bytes(num_tokens((32, 64, 64), 1)) // 2**30
    64
"""

from __future__ import annotations

import math

import torch

from ._validate import as_size_tuple, ceil_div, check_divisible, check_int, spatial_ndim


def _spatial(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be the spatial extent (D, H, W) or (H, W); received {shape}")
    return as_size_tuple(shape, len(shape), "shape")


def num_tokens(shape, patch=1) -> int:
    """Tokens from cutting a volume of ``shape`` ``(D, H, W)`` into ``patch``-sized patches.

    The patch (an int or per-axis ints) must divide the shape; ``patch=1``
    counts one token per voxel (a feature map).
    """
    spatial = _spatial(shape)
    patch_t = as_size_tuple(patch, len(spatial), "patch")
    check_divisible(spatial, patch_t, "patch size")
    return math.prod(s // p for s, p in zip(spatial, patch_t))


def _count(tokens: int, name: str = "tokens") -> int:
    check_int(tokens, name, minimum=1)
    return tokens


def attention_scores(tokens: int) -> int:
    """Entries of the global score matrix: ``N^2`` (one per query-key pair)."""
    return _count(tokens) ** 2


def attention_matrix_bytes(tokens: int, dtype: torch.dtype = torch.float32, heads: int = 1, batch: int = 1) -> int:
    """Bytes to hold the score matrices of ``batch`` items and ``heads`` heads."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return _count(batch, "batch") * _count(heads, "heads") * attention_scores(tokens) * itemsize


def attention_flops(tokens: int, head_dim: int, heads: int = 1) -> int:
    """FLOPs of ``QK^T`` and ``AV`` for self-attention: ``4 N^2 d`` per head.

    Each of the two products makes ``N^2`` outputs of ``d`` multiply-adds, and
    a multiply-add counts as 2 FLOPs. Softmax and projections are not counted.
    """
    return 4 * attention_scores(tokens) * _count(head_dim, "head_dim") * _count(heads, "heads")


def windowed_attention_scores(shape, window) -> int:
    """Score entries of window attention over a token grid ``shape``, summed over windows.

    A grid not divisible by the window is padded up, as Swin does:
    ``nW * (Wd Wh Ww)^2`` with ``nW = prod(ceil(shape / window))``.
    """
    spatial = _spatial(shape)
    window_t = as_size_tuple(window, len(spatial), "window")
    num_windows = math.prod(ceil_div(s, w) for s, w in zip(spatial, window_t))
    return num_windows * math.prod(window_t) ** 2


def patch_embed_params(patch, in_channels: int, embed_dim: int) -> int:
    """Parameters of a patch projection: ``E (prod(p) C + 1)`` (weights plus one bias per feature)."""
    ndim = spatial_ndim(patch)
    patch_t = as_size_tuple(patch, ndim, "patch")
    return _count(embed_dim, "embed_dim") * (math.prod(patch_t) * _count(in_channels, "in_channels") + 1)
