"""3D patches: patchify, unpatchify and the patch projection as a matrix product; cases, bugs, ruled-out calls."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ...patches import PatchEmbed, patchify, unpatchify
from ...sizes import as_triple
from ..exercise import (
    F32,
    F64,
    GRID_AXES,
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    arange,
    axes_text,
    randn,
)

# ----------------------------------------------------------------------------- cases

# (values, shape of x, patch size, dtype): every volume has a different number of patches along D, H and W,
# so code that takes one axis's count for all three cannot pass; batch and channels vary too.
_PATCH_VOLUMES = (
    ("arange", (1, 1, 4, 6, 8), 2, F64),
    ("arange", (2, 3, 4, 12, 20), (2, 3, 4), F64),
    ("random", (3, 2, 6, 4, 10), (3, 1, 2), F32),
    ("random", (2, 2, 6, 10, 4), 2, F64),
    ("random", (1, 4, 12, 8, 10), (4, 2, 5), F32),
    ("random", (2, 1, 15, 4, 6), (5, 4, 1), F32),
)


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _grid(shape, patch) -> tuple[int, ...]:
    return tuple(s // p for s, p in zip(shape[2:], as_triple(patch)))


def _volume_label(kind, shape, patch, dtype) -> str:
    b, c = shape[:2]
    patch_text = f"patch {patch}" if isinstance(patch, int) else f"patch {tuple(patch)}"
    return (
        f"{kind} volume {shape}: batch {b}, {c} channel{'s' if c > 1 else ''}, {patch_text}, "
        f"grid {_grid(shape, patch)} ({_dtype_name(dtype)})"
    )


def patchify_cases(device):
    g = torch.Generator().manual_seed(2)
    out = []
    for kind, shape, patch, dtype in _PATCH_VOLUMES:
        x = arange(shape, dtype, device) if kind == "arange" else randn(g, shape, dtype, device, scale=3.0)
        out.append(Case(_volume_label(kind, shape, patch, dtype), (x, patch)))
    return out


def unpatchify_cases(device):
    out = []
    for case in patchify_cases(device):
        image, patch = case.args
        label = case.label.replace("arange volume", "tokens of an arange volume").replace(
            "random volume", "tokens of a random volume"
        )
        out.append(Case(label, (patchify(image, patch), patch, _grid(image.shape, patch))))
    return out


# (B, C, D, H, W) of x, patch (pd, ph, pw), E, with a bias, dtype
_EMBED_CASES = (
    ((1, 1, 4, 6, 8), (2, 2, 2), 3, True, F64),
    ((2, 3, 4, 9, 16), (2, 3, 4), 5, True, F64),
    ((3, 2, 6, 4, 10), (3, 1, 2), 4, False, F32),
    ((2, 4, 12, 8, 10), (4, 2, 5), 6, True, F32),
    ((1, 2, 10, 9, 4), (5, 3, 1), 7, True, F64),
)


def embed_with_linear_cases(device):
    g = torch.Generator().manual_seed(5)
    out = []
    for shape, patch, e, with_bias, dtype in _EMBED_CASES:
        c = shape[1]
        x = randn(g, shape, dtype, device, scale=2.0)
        weight = randn(g, (e, c, *patch), dtype, device, scale=0.5)
        bias = randn(g, (e,), dtype, device) + 1.0 if with_bias else None
        label = (
            f"x {shape}, Conv3d kernel (E={e}, C={c}, {', '.join(map(str, patch))}), "
            f"{'with a bias' if with_bias else 'bias None'}, grid {_grid(shape, patch)} ({_dtype_name(dtype)})"
        )
        out.append(Case(label, (x, weight, bias)))
    return out


# ----------------------------------------------------------------------------- patches

def _patch_pattern(order=("d", "h", "w"), inner=("c", "p", "q", "r"), strided=False) -> str:
    split = "(p d) (q h) (r w)" if strided else "(d p) (h q) (w r)"
    return f"b c {split}", f"b ({' '.join(order)}) ({' '.join(inner)})"


def _patch_sizes(patch) -> dict:
    return dict(zip(("p", "q", "r"), as_triple(patch)))


def _patchify_variants(kind):
    def variants(case):
        x, patch = case.args
        sizes = _patch_sizes(patch)
        for order, inner, strided, detail in _layouts(kind):
            image, tokens = _patch_pattern(order, inner, strided)
            yield rearrange(x, f"{image} -> {tokens}", **sizes), detail
        if kind == "no_permute":
            b = x.shape[0]
            n = math.prod(s // p for s, p in zip(x.shape[2:], as_triple(patch)))
            yield x.reshape(b, n, -1), {}

    return variants


def _unpatchify_variants(kind):
    def variants(case):
        tokens, patch, grid = case.args
        sizes = _patch_sizes(patch) | dict(zip(GRID_AXES, grid))
        for order, inner, strided, detail in _layouts(kind):
            image, flat = _patch_pattern(order, inner, strided)
            yield rearrange(tokens, f"{flat} -> {image}", **sizes), detail
        if kind == "no_permute":
            b = tokens.shape[0]
            p = as_triple(patch)
            c = tokens.shape[2] // math.prod(p)
            yield tokens.reshape(b, c, *(g * s for g, s in zip(grid, p))), {}

    return variants


def _layouts(kind):
    """(patch order, in-patch order, strided, detail) for one family of patch-layout bugs."""
    if kind == "channels_last":
        yield GRID_AXES, ("p", "q", "r", "c"), False, {}
    elif kind == "patch_order":
        for order in permutations(GRID_AXES):
            if order != GRID_AXES:
                yield order, ("c", "p", "q", "r"), False, {"order": axes_text(order)}
    elif kind == "voxel_order":
        for inner in permutations(("c", "p", "q", "r")):
            if inner not in (("c", "p", "q", "r"), ("p", "q", "r", "c")):
                yield GRID_AXES, inner, False, {"order": axes_text(inner)}
    elif kind == "strided":
        yield GRID_AXES, ("c", "p", "q", "r"), True, {}


_PATCH_HINT = (
    "split each axis as (patches, voxels): x.view(B, C, D//pd, pd, H//ph, ph, W//pw, pw), permute to "
    "(B, D//pd, H//ph, W//pw, C, pd, ph, pw) = permute(0, 2, 4, 6, 1, 3, 5, 7), then reshape to (B, N, C*pd*ph*pw); "
    "or einops: rearrange(x, 'b c (d p) (h q) (w r) -> b (d h w) (c p q r)', p=pd, q=ph, r=pw)."
)


def _patch_bugs(make):
    return [
        Bug(
            "channels_last_in_patch",
            "each patch is flattened as (pd, ph, pw, C), channels last; the convention is channel-major "
            "(C, pd, ph, pw), "
            "the memory layout of a Conv3d kernel.",
            "put the channel axis first inside each token, (c p q r) rather than (p q r c). " + _PATCH_HINT,
            make("channels_last"),
        ),
        Bug(
            "patch_order",
            "the patches (tokens) come in the order {order} instead of row-major (d, h, w): D slowest, W fastest.",
            "order the patch-grid axes (D/pd, H/ph, W/pw) in that order before flattening them into tokens. "
            + _PATCH_HINT,
            make("patch_order"),
        ),
        Bug(
            "voxel_order",
            "the numbers inside each patch are flattened in the order {order} instead of (c, p, q, r): channel, then "
            "the patch's d, h, w.",
            "order the in-patch axes (C, pd, ph, pw) in that order before the last reshape. " + _PATCH_HINT,
            make("voxel_order"),
        ),
        Bug(
            "strided_patches",
            "each axis was split as (voxels, patches) instead of (patches, voxels), so a 'patch' gathers voxels spaced "
            "D/pd apart instead of a contiguous block.",
            "view D as (D//pd, pd), patches first, not (pd, D//pd). " + _PATCH_HINT,
            make("strided"),
        ),
        Bug(
            "reshape_without_permute",
            "the tensor was reshaped without permuting its axes first, so a token is a run of consecutive numbers in "
            "memory (part of a row of voxels), not a patch.",
            "a reshape alone cannot regroup voxels into cubes: permute the axes first. " + _PATCH_HINT,
            make("no_permute"),
        ),
    ]


PATCHIFY_BUGS = _patch_bugs(_patchify_variants)
UNPATCHIFY_BUGS = _patch_bugs(_unpatchify_variants)


# ----------------------------------------------------------------------------- a strided Conv3d as a linear layer


def embed_with_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The tokens of ``Conv3d(C, E, kernel_size=p, stride=p)`` with this ``weight`` and ``bias``.

    Args:
        x: ``(B, C, D, H, W)``.
        weight: the kernel ``(E, C, pd, ph, pw)``; the patch size is ``weight.shape[2:]``.
        bias: ``(E,)`` or None.

    Returns:
        ``(B, N, E)``: the convolution's output flattened to tokens in row-major ``(d, h, w)`` order,
        in ``x``'s dtype and on its device. Computed from the convolution's definition (the kernel times each
        block of voxels it visits, summed, plus the bias) in float64 numpy on the CPU: exact enough for any
        learner's float32 answer, and quick even on a busy CPU, where a float64 ``conv3d`` or a torch matrix
        product can take a large share of the check's time budget. The learners' tests check that it agrees
        with ``torch.nn.functional.conv3d``.
    """
    pd, ph, pw = weight.shape[2:]
    blocks = x.detach().cpu().to(torch.float64).unfold(2, pd, pd).unfold(3, ph, ph).unfold(4, pw, pw)
    out = np.einsum("bcdhwpqr,ecpqr->bdhwe", blocks.numpy(), weight.detach().cpu().to(torch.float64).numpy())
    if bias is not None:
        out = out + bias.detach().cpu().to(torch.float64).numpy()
    out = torch.from_numpy(np.ascontiguousarray(out).reshape(x.shape[0], -1, weight.shape[0]))
    return out.to(device=x.device, dtype=x.dtype)


def _linear(tokens: torch.Tensor, matrix: torch.Tensor, bias, like: torch.Tensor) -> torch.Tensor:
    """``tokens @ matrix + bias`` in float64 numpy (quick on a busy CPU), as ``like``'s dtype and device."""
    out = np.matmul(tokens.detach().cpu().to(torch.float64).numpy(), matrix.detach().cpu().to(torch.float64).numpy())
    if bias is not None:
        out = out + bias.detach().cpu().to(torch.float64).numpy()
    return torch.from_numpy(out).to(device=like.device, dtype=like.dtype)


def _embed_variants(kind):
    def variants(case):
        x, weight, bias = case.args
        e, patch = weight.shape[0], tuple(weight.shape[2:])
        tokens = patchify(x, patch)
        matrix = weight.reshape(e, -1)
        if kind == "no_bias":
            if bias is not None:
                yield _linear(tokens, matrix.T, None, x), {}
        elif kind == "order":
            sizes = _patch_sizes(patch)
            channels_last = rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (p q r c)", **sizes)
            yield _linear(channels_last, matrix.T, bias, x), {
                "which": "the patches were flattened as (pd, ph, pw, C) while the kernel is flattened as "
                "(C, pd, ph, pw)"
            }
            kernel_last = weight.permute(0, 2, 3, 4, 1).reshape(e, -1)
            yield _linear(tokens, kernel_last.T, bias, x), {
                "which": "the kernel was flattened as (pd, ph, pw, C) (permuted before the reshape) while patchify's "
                "tokens are (C, pd, ph, pw)"
            }
        elif kind == "reshape":
            yield _linear(tokens, weight.reshape(-1, e), bias, x), {}

    return variants


EMBED_BUGS = [
    Bug(
        "no_bias",
        "the bias is missing: the convolution adds bias[e] to feature e of every token.",
        "add the bias after the matrix product: tokens @ W.T + bias (when bias is not None).",
        _embed_variants("no_bias"),
    ),
    Bug(
        "flatten_order_mismatch",
        "{which}, so each weight meets the wrong voxel.",
        "flatten both in the same (C, pd, ph, pw) order: patchify's tokens, and weight.reshape(E, -1) (the kernel "
        "is stored as (E, C, pd, ph, pw)).",
        _embed_variants("order"),
    ),
    Bug(
        "weight_reshaped_not_transposed",
        "the (E, C*pd*ph*pw) weight matrix was reshaped to (C*pd*ph*pw, E) instead of transposed: a reshape keeps "
        "the numbers in memory order, so each column mixes the weights of several features.",
        "flatten the kernel to (E, C*pd*ph*pw) with weight.reshape(E, -1), then multiply by its transpose, .T.",
        _embed_variants("reshape"),
    ),
]


# ----------------------------------------------------------------------------- concept questions of lesson 03

CONCEPT_EXERCISES = [
    ChoiceExercise(
        "concept_patch_side_doubled_tokens",
        "what changes when the same CT is cut into 16^3 patches instead of 8^3 (two are right)",
        {
            "a": "there are 8 times fewer tokens",
            "b": "there are half as many tokens, because each side of a patch is twice as long",
            "c": "each token is 8 times longer: 4,096 numbers instead of 512",
            "d": "each token keeps its 512 numbers; only the number of tokens changes",
        },
        frozenset({"a", "c"}),
        why={
            "b": "the patch side doubles along each of the three axes, so the patch count halves along each of them; "
            "the number of tokens is the product of the three counts.",
            "d": "a token is one whole patch flattened: its length is the number of voxels in a patch times the "
            "channels, and a 16^3 patch holds more voxels than an 8^3 one.",
        },
    ),
    ChoiceExercise(
        "concept_patch_side_doubled_params",
        "the projection's parameters with 16^3 instead of 8^3 one-channel patches, E = 128",
        {
            "a": "they shrink about 8-fold, because there are 8 times fewer tokens to project",
            "b": "they stay 65,664: the same layer is applied to every patch, whatever the patch's size",
            "c": "they grow about 8-fold: every output feature has one weight per number of the flattened patch",
            "d": "they double, because the patch side doubled",
        },
        "c",
        why={
            "a": "the projection is one layer shared by all patches: the number of tokens says how often it is "
            "applied, not how many weights it has.",
            "b": "sharing the layer makes the count independent of the number of patches; now look at what one row "
            "of its weight matrix is multiplied with.",
            "d": "the side doubles along each of the three axes, so a patch holds far more than twice as many "
            "voxels.",
        },
    ),
    ChoiceExercise(
        "concept_bigger_scan_same_patches",
        "a 512 x 512 x 192 scan instead of 256 x 256 x 96, same 8^3 patches and E = 128 (two are right)",
        {
            "a": "the number of tokens grows 8-fold",
            "b": "the projection keeps its 65,664 parameters",
            "c": "the projection needs 8 times as many parameters: one set of weights per token",
            "d": "each token becomes 8 times longer, since the volume holds 8 times as many voxels",
        },
        frozenset({"a", "b"}),
        why={
            "c": "every patch is projected by the same weights: the layer is applied once per token, and applying "
            "it more often adds no parameters.",
            "d": "a token is one patch flattened, and a patch is still 8 x 8 x 8 voxels of one channel.",
        },
    ),
    ChoiceExercise(
        "concept_overlapping_stride",
        "Conv3d(1, 128, kernel_size=8, stride=4) on a 64 x 64 x 64 volume instead of stride 8",
        {
            "a": "nothing changes: the stride only sets how fast the kernel moves, the tokens are the same",
            "b": "it gives 15 x 15 x 15 = 3,375 tokens instead of 512, and neighbouring tokens share voxels, so it is "
            "no longer a linear layer applied to patchify's tokens",
            "c": "it has twice as many parameters, because every voxel is visited twice along each axis",
            "d": "it cuts the volume into 4 x 4 x 4 patches instead: 16 x 16 x 16 = 4,096 tokens of 64 voxels each",
        },
        "b",
        why={
            "a": "the stride is the step between two positions of the kernel, and each position gives one output "
            "token: the step decides how many tokens there are.",
            "c": "the parameters are the kernel's weights and biases, E (p^3 C + 1), set by the kernel's size, the "
            "channels and E; the stride only says where the kernel is placed.",
            "d": "the kernel still covers 8 x 8 x 8 voxels; the stride is the distance between two neighbouring "
            "kernel positions, not the size of what each one sees.",
        },
    ),
]


PATCH_BLOCKS = "reshape/view and permute, or einops.rearrange"

EXERCISES = [
    FunctionExercise(
        "patchify",
        patchify,
        patchify_cases,
        "tensor",
        "patchify(x, patch_size)",
        bugs=tuple(PATCHIFY_BUGS),
        ruled_out=(RuledOut("minattn.patchify", (patchify,)), RuledOut("minattn.PatchEmbed", (PatchEmbed,))),
        building_blocks=PATCH_BLOCKS,
    ),
    FunctionExercise(
        "unpatchify",
        unpatchify,
        unpatchify_cases,
        "tensor",
        "unpatchify(tokens, patch_size, grid)",
        bugs=tuple(UNPATCHIFY_BUGS),
        ruled_out=(RuledOut("minattn.unpatchify", (unpatchify,)),),
        building_blocks=PATCH_BLOCKS,
    ),
    FunctionExercise(
        "embed_with_linear",
        embed_with_linear,
        embed_with_linear_cases,
        "tensor",
        "embed_with_linear(x, weight, bias)",
        bugs=tuple(EMBED_BUGS),
        ruled_out=(
            RuledOut(
                "the convolution itself (torch.nn.functional.conv3d / torch.nn.Conv3d)",
                (F.conv3d, torch.convolution, torch._convolution, nn.Conv3d),
            ),
            RuledOut("minattn.PatchEmbed", (PatchEmbed, PatchEmbed.from_conv)),
        ),
        building_blocks="patchify (yours or minattn.patchify), reshape, one matrix product (@) and the bias",
    ),
    *CONCEPT_EXERCISES,
]
