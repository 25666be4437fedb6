"""Test cases for every reference function the grader knows.

Each reference function has a handful of cases, simple ones first: a fixed
input a learner can redo by hand, then random ones with awkward shapes
(non-cubic, odd sizes, batch > 1, extra head axes), in float64 and float32.
Inputs are drawn on the CPU from a seeded generator and then moved to the
learner's device, so every run and every device sees the same numbers.

A :class:`Case` holds positional and keyword arguments. Keyword arguments are
the reference's optional parameters (``mask=``, ``bias=``, ``device=``...):
a learner whose function does not take one of them has that case skipped,
except for ``device=``, which is simply left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import cost
from ..attention import scaled_dot_product_attention
from ..multihead import merge_heads, split_heads
from ..patches import patchify, unpatchify
from ..position import relative_position_index
from ..softmax import softmax
from ..windows import cyclic_shift, shifted_window_mask, window_partition, window_reverse

F64, F32 = torch.float64, torch.float32


@dataclass
class Case:
    """One call of the function under test.

    Attributes:
        label: what the case is about, for the learner.
        args: positional arguments.
        kwargs: keyword arguments (optional parameters of the reference).
        droppable: keyword names left out, instead of skipping the case, when
            the learner's function does not take them (``device``).
        tags: hints for the bug library, e.g. ``"large"`` for huge logits.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    droppable: frozenset = frozenset()
    tags: frozenset = frozenset()


@dataclass
class Spec:
    """A reference function and how to test against it.

    ``output`` is the kind of result (see :data:`minattn.grading.compare.KINDS`);
    ``signature`` is shown to a learner whose function does not fit.
    """

    name: str
    reference: Callable
    make_cases: Callable[[torch.device], list]
    output: str
    signature: str


# ----------------------------------------------------------------------------- helpers


def _dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    # Apple's MPS has no float64: test float32 there instead.
    return F32 if (dtype == F64 and device.type == "mps") else dtype


def _randn(g: torch.Generator, shape, dtype, device, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=g, dtype=F64) * scale).to(device=device, dtype=_dtype(dtype, device))


def _arange(shape, dtype, device) -> torch.Tensor:
    return torch.arange(math.prod(shape), dtype=F64).reshape(shape).to(device=device, dtype=_dtype(dtype, device))


def _mask(g: torch.Generator, shape, device) -> torch.Tensor:
    """Random boolean mask where every query row allows some keys and blocks others."""
    mask = torch.rand(shape, generator=g) < 0.5
    n_q, n_k = shape[-2], shape[-1]
    rows = torch.arange(n_q)
    mask[..., rows, rows % n_k] = True
    mask[..., rows, (rows + 1) % n_k] = False
    return mask.to(device)


# ----------------------------------------------------------------------------- cases per function


def softmax_cases(device):
    g = torch.Generator().manual_seed(0)
    fixed = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 5.0, 2.0]], dtype=F64).to(
        device, _dtype(F64, device)
    )
    with_inf = _randn(g, (4, 6), F64, device)
    for row, col in ((0, 1), (1, 0), (1, 5), (2, 2), (3, 3), (3, 4)):
        with_inf[row, col] = float("-inf")
    return [
        Case("fixed 3x3 logits (float64), dim=-1", (fixed, -1)),
        Case("random logits (float64) with batch axes, dim=-1", (_randn(g, (2, 3, 5, 7), F64, device), -1)),
        Case("random logits (float32), dim=1, not the last axis", (_randn(g, (3, 4, 6), F32, device), 1)),
        Case("random logits (float64), dim=0", (_randn(g, (4, 5), F64, device), 0)),
        Case("logits with -inf entries (masked positions, float64), dim=-1", (with_inf, -1)),
        Case(
            "large logits of size ~1e4 (float32), dim=-1",
            (_randn(g, (3, 5), F32, device, 1e4), -1),
            tags=frozenset({"large"}),
        ),
        Case(
            "large logits of size ~1e4 (float64), dim=2",
            (_randn(g, (2, 4, 3), F64, device, 1e4), 2),
            tags=frozenset({"large"}),
        ),
    ]


def attention_cases(device):
    g = torch.Generator().manual_seed(1)
    # The worked example: q1 = k1, q2 = k2, and k3 is equally similar to both queries.
    k = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=F64)
    q = k[:2].clone()
    v = torch.eye(3, dtype=F64)
    worked = tuple(t.to(device, _dtype(F64, device)) for t in (q, k, v))

    def qkv(batch, n_q, n_k, d_k, d_v, dtype, scale=1.0):
        return (
            _randn(g, (*batch, n_q, d_k), dtype, device, scale),
            _randn(g, (*batch, n_k, d_k), dtype, device, scale),
            _randn(g, (*batch, n_k, d_v), dtype, device),
        )

    heads = frozenset({"heads"})
    return [
        Case("worked example: q1 = k1, q2 = k2, k3 halfway (float64)", worked),
        Case("random, no batch axes, Nq=5, Nk=7, d_k=8, d_v=6 (float64)", qkv((), 5, 7, 8, 6, F64)),
        Case(
            "batch and head axes (B=2, h=3), Nq=5, Nk=7, d_k=4, d_v=6 (float32)",
            qkv((2, 3), 5, 7, 4, 6, F32),
            tags=heads,
        ),
        Case(
            "self-attention shape with extra axes (1, 2, 2), N=6, d=5 (float64)",
            qkv((1, 2, 2), 6, 6, 5, 5, F64),
            tags=heads,
        ),
        Case(
            "boolean mask (5, 7), True = allowed, batch and heads (2, 3) (float64)",
            qkv((2, 3), 5, 7, 4, 6, F64),
            {"mask": _mask(g, (5, 7), device)},
            tags=heads,
        ),
        Case(
            "boolean mask per batch item (2, 1, 6, 6), broadcast over heads (float32)",
            qkv((2, 3), 6, 6, 4, 4, F32),
            {"mask": _mask(g, (2, 1, 6, 6), device)},
            tags=heads,
        ),
        Case(
            "additive bias (3, 5, 7), one per head (float64)",
            qkv((2, 3), 5, 7, 4, 6, F64),
            {"bias": _randn(g, (3, 5, 7), F64, device)},
            tags=heads,
        ),
        Case("explicit scale=0.3 (float64)", qkv((2,), 5, 7, 4, 6, F64), {"scale": 0.3}),
        Case(
            "return_weights=True gives (out, weights) (float64)", qkv((2,), 5, 7, 4, 6, F64), {"return_weights": True}
        ),
        Case(
            "large scores, q and k of size ~30 (float32)", qkv((2,), 4, 6, 8, 3, F32, 30.0), tags=frozenset({"large"})
        ),
    ]


def patchify_cases(device):
    g = torch.Generator().manual_seed(2)
    return [
        Case("arange volume (1, 1, 4, 4, 4), patch 2 (float64)", (_arange((1, 1, 4, 4, 4), F64, device), 2)),
        Case(
            "arange volume (2, 3, 4, 6, 8): batch 2, 3 channels, patch (2, 3, 4) (float64)",
            (_arange((2, 3, 4, 6, 8), F64, device), (2, 3, 4)),
        ),
        Case(
            "random volume (2, 2, 6, 4, 2), patch (3, 2, 1) (float32)",
            (_randn(g, (2, 2, 6, 4, 2), F32, device), (3, 2, 1)),
        ),
        Case("random volume (1, 1, 8, 8, 8), patch 4 (float32)", (_randn(g, (1, 1, 8, 8, 8), F32, device), 4)),
    ]


def unpatchify_cases(device):
    out = []
    for case in patchify_cases(device):
        image, patch = case.args
        patch_t = (patch,) * 3 if isinstance(patch, int) else patch
        grid = tuple(s // p for s, p in zip(image.shape[2:], patch_t))
        tokens = patchify(image, patch)
        label = case.label.replace("arange volume", "tokens of an arange volume").replace(
            "random volume", "tokens of a random volume"
        )
        out.append(Case(label + f", grid {grid}", (tokens, patch, grid)))
    return out


def window_partition_cases(device):
    g = torch.Generator().manual_seed(3)
    return [
        Case("arange grid (1, 4, 4, 4, 1), window 2 (float64)", (_arange((1, 4, 4, 4, 1), F64, device), 2)),
        Case(
            "arange grid (2, 4, 6, 8, 3): batch 2, window (2, 3, 4) (float64)",
            (_arange((2, 4, 6, 8, 3), F64, device), (2, 3, 4)),
        ),
        Case(
            "random grid (2, 6, 4, 4, 2), window (3, 2, 2) (float32)",
            (_randn(g, (2, 6, 4, 4, 2), F32, device), (3, 2, 2)),
        ),
        Case("random grid (1, 4, 4, 4, 5), one window of 4 (float32)", (_randn(g, (1, 4, 4, 4, 5), F32, device), 4)),
    ]


def window_reverse_cases(device):
    out = []
    for case in window_partition_cases(device):
        grid, window = case.args
        spatial = tuple(grid.shape[1:-1])
        label = case.label.replace("arange grid", "windows of an arange grid").replace(
            "random grid", "windows of a random grid"
        )
        out.append(Case(label, (window_partition(grid, window), window, spatial)))
    return out


def cyclic_shift_cases(device):
    g = torch.Generator().manual_seed(4)
    return [
        Case("arange grid (1, 4, 4, 4, 1), shift 1 (float64)", (_arange((1, 4, 4, 4, 1), F64, device), 1)),
        Case(
            "arange grid (2, 4, 6, 8, 3), shift (1, 2, 3) (float64)", (_arange((2, 4, 6, 8, 3), F64, device), (1, 2, 3))
        ),
        Case(
            "random grid (1, 6, 4, 5, 2), negative shift (-2, 1, -1) (float32)",
            (_randn(g, (1, 6, 4, 5, 2), F32, device), (-2, 1, -1)),
        ),
        Case(
            "random grid (2, 4, 4, 4, 2), shift (2, 0, 1) (float32)",
            (_randn(g, (2, 4, 4, 4, 2), F32, device), (2, 0, 1)),
        ),
    ]


def shifted_window_mask_cases(device):
    dev = frozenset({"device"})
    return [
        Case("grid (4, 4, 4), window 2, shift 1", ((4, 4, 4), 2, 1), {"device": device}, dev),
        Case(
            "grid (4, 6, 8), window (2, 3, 4), shift (1, 1, 2)",
            ((4, 6, 8), (2, 3, 4), (1, 1, 2)),
            {"device": device},
            dev,
        ),
        Case(
            "grid (6, 4, 4), window (3, 2, 4), shift (1, 1, 0)",
            ((6, 4, 4), (3, 2, 4), (1, 1, 0)),
            {"device": device},
            dev,
        ),
        Case("grid (8, 8, 8), window 4, shift 2", ((8, 8, 8), 4, 2), {"device": device}, dev),
    ]


def relative_position_index_cases(device):
    dev = frozenset({"device"})
    return [
        Case("window 2 (2 x 2 x 2)", (2,), {"device": device}, dev),
        Case("window (2, 3, 4)", ((2, 3, 4),), {"device": device}, dev),
        Case("window (3, 2, 2)", ((3, 2, 2),), {"device": device}, dev),
        Case(
            "window (2, 2, 3) in the table of a (3, 4, 4) window",
            ((2, 2, 3),),
            {"table_window_size": (3, 4, 4), "device": device},
            dev,
        ),
    ]


def split_heads_cases(device):
    g = torch.Generator().manual_seed(5)
    return [
        Case("arange (1, 2, 6), 2 heads (float64)", (_arange((1, 2, 6), F64, device), 2)),
        Case("random (2, 5, 12), 3 heads (float64)", (_randn(g, (2, 5, 12), F64, device), 3)),
        Case("random (3, 7, 8), 4 heads (float32)", (_randn(g, (3, 7, 8), F32, device), 4)),
        Case("random (2, 2, 6), 2 heads: as many tokens as heads (float32)", (_randn(g, (2, 2, 6), F32, device), 2)),
    ]


def merge_heads_cases(device):
    g = torch.Generator().manual_seed(6)
    return [
        Case("arange (1, 2, 3, 2): 2 heads of 3 tokens (float64)", (_arange((1, 2, 3, 2), F64, device),)),
        Case("random (2, 3, 5, 4) (float64)", (_randn(g, (2, 3, 5, 4), F64, device),)),
        Case("random (3, 4, 7, 2) (float32)", (_randn(g, (3, 4, 7, 2), F32, device),)),
        Case("random (2, 3, 3, 5): as many tokens as heads (float32)", (_randn(g, (2, 3, 3, 5), F32, device),)),
    ]


def patch_embed_params_cases(device):
    return [
        Case("8 x 8 x 8 patches, 1 channel, E=128 (the course's example)", (8, 1, 128)),
        Case("patch (2, 4, 8), 3 channels, E=96", ((2, 4, 8), 3, 96)),
        Case("16^3 patches, 4 channels, E=768", (16, 4, 768)),
        Case("patch (4, 4, 2), 2 channels, E=48", ((4, 4, 2), 2, 48)),
    ]


def attention_scores_cases(device):
    return [
        Case("N = 12,288 tokens", (12288,)),
        Case("N = 131,072 tokens (a 32 x 64 x 64 feature map)", (131072,)),
        Case("N = 7 tokens", (7,)),
        Case("N = 1 token", (1,)),
    ]


def attention_matrix_bytes_cases(device):
    return [
        Case("N = 131,072 tokens, float32", (131072,)),
        Case("N = 4,096 tokens, float16", (4096, torch.float16)),
        Case("N = 1,000 tokens, float64", (1000, torch.float64)),
        Case("N = 512 tokens, float32, 8 heads, batch 2", (512, torch.float32), {"heads": 8, "batch": 2}),
        Case("N = 300 tokens, bfloat16, 3 heads", (300, torch.bfloat16), {"heads": 3}),
    ]


def windowed_attention_scores_cases(device):
    return [
        Case("token grid 128^3, window 8", ((128, 128, 128), 8)),
        Case("token grid (32, 64, 64), window 8", ((32, 64, 64), 8)),
        Case("token grid (6, 9, 12), window (2, 3, 4)", ((6, 9, 12), (2, 3, 4))),
        Case("token grid (10, 20, 30), window 7: padded up to whole windows", ((10, 20, 30), 7)),
    ]


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("softmax", softmax, softmax_cases, "tensor", "softmax(x, dim=-1)"),
        Spec(
            "scaled_dot_product_attention",
            scaled_dot_product_attention,
            attention_cases,
            "tensor",
            "scaled_dot_product_attention(q, k, v, mask=None, bias=None, scale=None, return_weights=False)",
        ),
        Spec("patchify", patchify, patchify_cases, "tensor", "patchify(x, patch_size)"),
        Spec("unpatchify", unpatchify, unpatchify_cases, "tensor", "unpatchify(tokens, patch_size, grid)"),
        Spec(
            "window_partition", window_partition, window_partition_cases, "tensor", "window_partition(x, window_size)"
        ),
        Spec(
            "window_reverse",
            window_reverse,
            window_reverse_cases,
            "tensor",
            "window_reverse(windows, window_size, spatial_shape)",
        ),
        Spec("cyclic_shift", cyclic_shift, cyclic_shift_cases, "tensor", "cyclic_shift(x, shift)"),
        Spec(
            "shifted_window_mask",
            shifted_window_mask,
            shifted_window_mask_cases,
            "mask",
            "shifted_window_mask(spatial_shape, window_size, shift, device=None)",
        ),
        Spec(
            "relative_position_index",
            relative_position_index,
            relative_position_index_cases,
            "index",
            "relative_position_index(window_size, table_window_size=None, device=None)",
        ),
        Spec("split_heads", split_heads, split_heads_cases, "tensor", "split_heads(x, num_heads)"),
        Spec("merge_heads", merge_heads, merge_heads_cases, "tensor", "merge_heads(x)"),
        Spec(
            "patch_embed_params",
            cost.patch_embed_params,
            patch_embed_params_cases,
            "number",
            "patch_embed_params(patch, in_channels, embed_dim)",
        ),
        Spec("attention_scores", cost.attention_scores, attention_scores_cases, "number", "attention_scores(tokens)"),
        Spec(
            "attention_matrix_bytes",
            cost.attention_matrix_bytes,
            attention_matrix_bytes_cases,
            "number",
            "attention_matrix_bytes(tokens, dtype=torch.float32, heads=1, batch=1)",
        ),
        Spec(
            "windowed_attention_scores",
            cost.windowed_attention_scores,
            windowed_attention_scores_cases,
            "number",
            "windowed_attention_scores(shape, window)",
        ),
    )
}

KNOWN_NAMES = tuple(SPECS)
