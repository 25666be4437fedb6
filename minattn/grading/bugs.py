"""The bug library: deliberately wrong versions of each reference function.

A learner's bug is recognised by running these wrong variants on the failing
case and seeing whose output the learner's matches. Each :class:`Bug` has a
short key, a sentence saying what went wrong (with ``{placeholders}`` filled
from the variant that matched), and a hint on how to fix it. A few bugs are
recognised by a predicate on the output instead (an overflow shows as inf or
NaN on large logits, whatever else the code does).

Variants that equal the reference on a given case cannot explain a failure
there and are ignored (see :mod:`minattn.grading.diagnose`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import permutations

import torch
from einops import rearrange

from .. import cost
from ..attention import scaled_dot_product_attention
from ..softmax import softmax
from ..windows import region_ids, shifted_window_mask, window_partition
from .cases import Case


@dataclass
class Bug:
    """A known mistake.

    ``variants(case)`` yields ``(output, detail)`` pairs: what the buggy code
    would return on ``case`` and the words that fill ``what``'s placeholders.
    ``predicate(case, got, expected)`` instead returns a detail dict when the
    learner's output shows the bug, else None.
    """

    key: str
    what: str
    hint: str
    variants: Callable[[Case], Iterable[tuple]] | None = None
    predicate: Callable[[Case, object, object], dict | None] | None = None

    def explain(self, detail: dict) -> str:
        return f"{self.what.format(**detail)}\n  Hint: {self.hint.format(**detail)}"


def _triple(value) -> tuple[int, ...]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)


def _axes_text(order: Iterable[str]) -> str:
    return "(" + ", ".join(order) + ")"


# ----------------------------------------------------------------------------- softmax


def _overflow(case: Case, got, expected) -> dict | None:
    """inf/NaN in the output where the reference is finite, on logits too large for exp."""
    tensors = [t for t in case.args if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if "large" not in case.tags or not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
        return None
    if got.shape != expected.shape or got.device.type == "meta":
        return None
    if not (~torch.isfinite(got.detach().cpu()) & torch.isfinite(expected.detach().cpu())).any():
        return None
    size = max(float(t[torch.isfinite(t)].abs().max()) for t in tensors)
    return {"size": f"{size:.3g}"}


def _softmax_wrong_axis(case):
    x, dim = case.args
    for axis in range(x.ndim):
        if axis != dim % x.ndim:
            yield softmax(x, axis), {"axis": axis, "dim": dim}


def _softmax_sum_all(case):
    x, dim = case.args
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    yield e / e.sum(), {"dim": dim}


def _softmax_no_keepdim(case):
    x, dim = case.args
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    yield e / e.sum(dim=dim), {"dim": dim}
    e = torch.exp(x - x.amax(dim=dim))
    yield e / e.sum(dim=dim, keepdim=True), {"dim": dim}


def _softmax_no_normalise(case):
    x, dim = case.args
    yield torch.exp(x - x.amax(dim=dim, keepdim=True)), {}


def _softmax_no_exp(case):
    x, dim = case.args
    yield x / x.sum(dim=dim, keepdim=True), {}


SOFTMAX_BUGS = [
    Bug(
        "no_max_subtraction",
        "exp overflowed: on logits as large as {size} your output has inf or NaN where the right answer is finite. "
        "The row maximum was not subtracted before exp (exp(1e4) is inf in every float type, and inf / inf is NaN).",
        "subtract the maximum along dim first: x = x - x.amax(dim=dim, keepdim=True). The factor exp(-max) cancels "
        "between numerator and denominator, so the result is the same, but every exponent is now <= 0.",
        predicate=_overflow,
    ),
    Bug(
        "wrong_axis",
        "the softmax is normalised over axis {axis} instead of dim={dim} (it sums to 1 along the wrong axis).",
        "pass dim to every reduction: x.amax(dim=dim, keepdim=True) and exps.sum(dim=dim, keepdim=True), never a "
        "fixed axis such as -1 or 1.",
        _softmax_wrong_axis,
    ),
    Bug(
        "sum_over_everything",
        "the exponentials are divided by the sum over the whole tensor, not by the sum along dim={dim}.",
        "sum along dim only: exps.sum(dim=dim, keepdim=True).",
        _softmax_sum_all,
    ),
    Bug(
        "missing_keepdim",
        "a reduction along dim={dim} lost its axis (keepdim=False), so it broadcast against the wrong axis: "
        "a row was shifted or divided by another row's max or sum.",
        "keep the reduced axis: x.amax(dim=dim, keepdim=True) and .sum(dim=dim, keepdim=True).",
        _softmax_no_keepdim,
    ),
    Bug(
        "not_normalised",
        "the exponentials are never divided by their sum, so the weights do not add up to 1.",
        "divide by the sum along dim: exps / exps.sum(dim=dim, keepdim=True).",
        _softmax_no_normalise,
    ),
    Bug(
        "no_exp",
        "the logits are divided by their sum without taking exp first (that is not a softmax, and it can be negative).",
        "exponentiate first: exps = torch.exp(x - x.amax(dim=dim, keepdim=True)), then normalise.",
        _softmax_no_exp,
    ),
]


# ----------------------------------------------------------------------------- attention


def _explicit_attention(
    q,
    k,
    v,
    mask=None,
    bias=None,
    scale=None,
    return_weights=False,
    softmax_dim=-1,
    mask_mode="inf",
    bias_before_scale=False,
    transpose=False,
):
    """Attention with switches that reproduce common mistakes."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    raw = (k @ q.transpose(-2, -1)) if transpose else (q @ k.transpose(-2, -1))
    if bias is not None and bias_before_scale:
        scores = (raw + bias) * scale
    else:
        scores = raw * scale + (bias if bias is not None else 0.0)
    if mask is not None and mask_mode == "inf":
        scores = torch.where(mask, scores, float("-inf"))
    elif mask is not None and mask_mode == "zero":
        scores = torch.where(mask, scores, torch.zeros_like(scores))
    weights = softmax(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    out = weights @ v
    return (out, weights) if return_weights else out


def _sdpa(case: Case, **override):
    return scaled_dot_product_attention(*case.args, **{**case.kwargs, **override})


def _no_explicit_scale(case: Case) -> bool:
    return case.kwargs.get("scale") is None


def _attn_no_scale(case):
    if _no_explicit_scale(case):
        yield _sdpa(case, scale=1.0), {}


def _attn_scale_1_over_d(case):
    if _no_explicit_scale(case):
        d = case.args[0].shape[-1]
        yield _sdpa(case, scale=1.0 / d), {"d": d}


def _attn_scale_model_width(case):
    q = case.args[0]
    if _no_explicit_scale(case) and "heads" in case.tags and q.ndim >= 3:
        heads, d = q.shape[-3], q.shape[-1]
        yield _sdpa(case, scale=1.0 / math.sqrt(heads * d)), {"c": heads * d, "h": heads, "d": d}


def _attn_scale_value_width(case):
    q, v = case.args[0], case.args[2]
    if _no_explicit_scale(case) and v.shape[-1] != q.shape[-1]:
        yield _sdpa(case, scale=1.0 / math.sqrt(v.shape[-1])), {"dv": v.shape[-1], "d": q.shape[-1]}


def _attn_scale_ignored(case):
    if not _no_explicit_scale(case):
        yield _sdpa(case, scale=None), {"scale": case.kwargs["scale"]}


def _attn_variant(**switches):
    def variants(case):
        yield _explicit_attention(*case.args, **{**case.kwargs, **switches}), {}

    return variants


def _attn_transposed(case):
    q, k = case.args[:2]
    if q.shape[-2] == k.shape[-2]:
        yield _explicit_attention(*case.args, **case.kwargs, transpose=True), {}


def _attn_mask(mode):
    def variants(case):
        if case.kwargs.get("mask") is not None:
            if mode == "inverted":
                yield _sdpa(case, mask=~case.kwargs["mask"]), {}
            elif mode == "ignored":
                yield _sdpa(case, mask=None), {}
            else:
                yield _explicit_attention(*case.args, **case.kwargs, mask_mode=mode), {}

    return variants


def _attn_bias(mode):
    def variants(case):
        if case.kwargs.get("bias") is not None:
            if mode == "ignored":
                yield _sdpa(case, bias=None), {}
            else:
                yield _explicit_attention(*case.args, **case.kwargs, bias_before_scale=True), {}

    return variants


def _attn_weights_swapped(case):
    if case.kwargs.get("return_weights"):
        out, weights = _sdpa(case)
        yield (weights, out), {}


def _attn_weights_only(case):
    if not case.kwargs.get("return_weights"):
        yield _sdpa(case, return_weights=True)[1], {}


ATTENTION_BUGS = [
    Bug(
        "no_max_subtraction",
        "the softmax overflowed: with scores as large as these your output has inf or NaN where the right answer is "
        "finite. The softmax does not subtract the row maximum before exp.",
        "use a stable softmax (subtract scores.amax(dim=-1, keepdim=True) before exp), e.g. minattn.softmax.",
        predicate=_overflow,
    ),
    Bug(
        "scale_model_width",
        "the scores are scaled by 1/sqrt({c}), the model width C = h * d = {h} * {d}, instead of the head width: "
        "with head axes each dot product sums only d_k = {d} terms.",
        "scale by 1 / math.sqrt(q.shape[-1]), the last axis of q (the head's dimension), never by C.",
        _attn_scale_model_width,
    ),
    Bug(
        "no_scaling",
        "the scores are not scaled: you computed softmax(q k^T) v instead of softmax(q k^T / sqrt(d_k)) v.",
        "multiply the scores by 1 / math.sqrt(d_k) with d_k = q.shape[-1] (or by scale when it is given).",
        _attn_no_scale,
    ),
    Bug(
        "scale_1_over_d",
        "the scores are divided by d_k = {d} instead of sqrt(d_k) (scaled by 1/d instead of 1/sqrt(d)).",
        "divide by math.sqrt(d_k): the variance of q.k grows like d_k, so its standard deviation grows like sqrt(d_k).",
        _attn_scale_1_over_d,
    ),
    Bug(
        "scale_value_width",
        "the scores are scaled with the value width d_v = {dv} instead of the key width d_k = {d}.",
        "use d_k = q.shape[-1] (= k.shape[-1]); v's last axis does not enter the scores.",
        _attn_scale_value_width,
    ),
    Bug(
        "scale_ignored",
        "your function ignores the scale argument (scale={scale} was given) and uses 1/sqrt(d_k) anyway.",
        "use the default only when scale is None: scale = 1 / math.sqrt(d_k) if scale is None else scale.",
        _attn_scale_ignored,
    ),
    Bug(
        "mask_inverted",
        "the mask is inverted: your code blocked the positions where mask is True. Here True means 'may attend' "
        "(as in torch.nn.functional.scaled_dot_product_attention).",
        "keep scores where mask is True: torch.where(mask, scores, float('-inf')), "
        "or scores.masked_fill(~mask, float('-inf')).",
        _attn_mask("inverted"),
    ),
    Bug(
        "mask_ignored",
        "the mask is ignored: blocked keys still receive weight.",
        "before the softmax set the scores of blocked pairs to -inf: torch.where(mask, scores, float('-inf')).",
        _attn_mask("ignored"),
    ),
    Bug(
        "mask_zero",
        "blocked scores were set to 0 instead of -inf; exp(0) = 1, so blocked keys still get weight.",
        "fill blocked scores with float('-inf'), whose exp is exactly 0.",
        _attn_mask("zero"),
    ),
    Bug(
        "mask_after_softmax",
        "the mask was applied after the softmax (weights * mask), so the remaining weights no longer sum to 1.",
        "mask the scores before the softmax (with -inf), so the softmax renormalises over the allowed keys.",
        _attn_mask("after"),
    ),
    Bug(
        "bias_ignored",
        "the bias argument is ignored.",
        "add it to the scaled scores, before masking and softmax: scores = q @ k.transpose(-2, -1) * scale + bias.",
        _attn_bias("ignored"),
    ),
    Bug(
        "bias_scaled",
        "the bias was added before scaling, so it was scaled too: (q k^T + bias) * scale.",
        "scale first, then add the bias: scores = q @ k.transpose(-2, -1) * scale + bias.",
        _attn_bias("before_scale"),
    ),
    Bug(
        "softmax_wrong_axis",
        "the softmax runs over the queries (dim=-2) instead of the keys (dim=-1): each query's weights must sum to 1.",
        "take the softmax over the last axis of the scores, softmax(scores, dim=-1).",
        _attn_variant(softmax_dim=-2),
    ),
    Bug(
        "scores_transposed",
        "the score matrix is transposed (k q^T instead of q k^T): row i must hold query i's similarity to every key.",
        "scores = q @ k.transpose(-2, -1), shape (..., Nq, Nk).",
        _attn_transposed,
    ),
    Bug(
        "weights_swapped",
        "with return_weights=True you returned (weights, out) instead of (out, weights).",
        "return out first: return (out, weights) if return_weights else out.",
        _attn_weights_swapped,
    ),
    Bug(
        "returned_weights",
        "you returned the attention weights, not the output: the weights must still multiply the values.",
        "out = weights @ v, shape (..., Nq, d_v).",
        _attn_weights_only,
    ),
]


# ----------------------------------------------------------------------------- patches

_GRID_AXES = ("d", "h", "w")


def _patch_pattern(order=("d", "h", "w"), inner=("c", "p", "q", "r"), strided=False) -> str:
    split = "(p d) (q h) (r w)" if strided else "(d p) (h q) (w r)"
    return f"b c {split}", f"b ({' '.join(order)}) ({' '.join(inner)})"


def _patch_sizes(patch) -> dict:
    return dict(zip(("p", "q", "r"), _triple(patch)))


def _patchify_variants(kind):
    def variants(case):
        x, patch = case.args
        sizes = _patch_sizes(patch)
        for order, inner, strided, detail in _layouts(kind):
            image, tokens = _patch_pattern(order, inner, strided)
            yield rearrange(x, f"{image} -> {tokens}", **sizes), detail
        if kind == "no_permute":
            b = x.shape[0]
            n = math.prod(s // p for s, p in zip(x.shape[2:], _triple(patch)))
            yield x.reshape(b, n, -1), {}

    return variants


def _unpatchify_variants(kind):
    def variants(case):
        tokens, patch, grid = case.args
        sizes = _patch_sizes(patch) | dict(zip(_GRID_AXES, grid))
        for order, inner, strided, detail in _layouts(kind):
            image, flat = _patch_pattern(order, inner, strided)
            yield rearrange(tokens, f"{flat} -> {image}", **sizes), detail
        if kind == "no_permute":
            b = tokens.shape[0]
            p = _triple(patch)
            c = tokens.shape[2] // math.prod(p)
            yield tokens.reshape(b, c, *(g * s for g, s in zip(grid, p))), {}

    return variants


def _layouts(kind):
    """(patch order, in-patch order, strided, detail) for one family of patch-layout bugs."""
    if kind == "channels_last":
        yield _GRID_AXES, ("p", "q", "r", "c"), False, {}
    elif kind == "patch_order":
        for order in permutations(_GRID_AXES):
            if order != _GRID_AXES:
                yield order, ("c", "p", "q", "r"), False, {"order": _axes_text(order)}
    elif kind == "voxel_order":
        for inner in permutations(("c", "p", "q", "r")):
            if inner not in (("c", "p", "q", "r"), ("p", "q", "r", "c")):
                yield _GRID_AXES, inner, False, {"order": _axes_text(inner)}
    elif kind == "strided":
        yield _GRID_AXES, ("c", "p", "q", "r"), True, {}


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


# ----------------------------------------------------------------------------- windows

_WINDOW_AXES = ("wd", "wh", "ww")
_SLOWEST = {"d": "D slowest", "h": "H slowest", "w": "W slowest"}


def _window_layouts(kind):
    """(window order, token order, strided, detail) for one family of window-layout bugs."""
    if kind == "window_order":
        for order in permutations(_GRID_AXES):
            if order != _GRID_AXES:
                yield ("b", *order), _WINDOW_AXES, False, {"order": _axes_text(order), "slowest": _SLOWEST[order[0]]}
    elif kind == "batch_order":
        for i in range(1, 4):
            order = [*_GRID_AXES]
            order.insert(i, "b")
            yield tuple(order), _WINDOW_AXES, False, {"order": _axes_text(order)}
    elif kind == "token_order":
        for inner in permutations(_WINDOW_AXES):
            if inner != _WINDOW_AXES:
                yield ("b", *_GRID_AXES), inner, False, {"order": _axes_text(inner)}
    elif kind == "strided":
        yield ("b", *_GRID_AXES), _WINDOW_AXES, True, {}


def _window_pattern(order, inner, strided):
    split = "(wd d) (wh h) (ww w)" if strided else "(d wd) (h wh) (w ww)"
    return f"b {split} c", f"({' '.join(order)}) ({' '.join(inner)}) c"


def _window_sizes(window) -> dict:
    return dict(zip(_WINDOW_AXES, _triple(window)))


def _partition_variants(kind):
    def variants(case):
        x, window = case.args
        yield from _partition_layouts(x, window, kind)

    return variants


def _partition_layouts(x, window, kind):
    sizes = _window_sizes(window)
    for order, inner, strided, detail in _window_layouts(kind):
        grid, flat = _window_pattern(order, inner, strided)
        yield rearrange(x, f"{grid} -> {flat}", **sizes), detail
    if kind == "no_permute":
        yield x.reshape(-1, math.prod(_triple(window)), x.shape[-1]), {}


def _reverse_variants(kind):
    def variants(case):
        windows, window, spatial = case.args
        w = _triple(window)
        sizes = _window_sizes(window) | dict(zip(_GRID_AXES, (s // x for s, x in zip(spatial, w))))
        for order, inner, strided, detail in _window_layouts(kind):
            grid, flat = _window_pattern(order, inner, strided)
            yield rearrange(windows, f"{flat} -> {grid}", **sizes), detail
        if kind == "no_permute":
            batch = windows.shape[0] // math.prod(s // x for s, x in zip(spatial, w))
            yield windows.reshape(batch, *spatial, windows.shape[-1]), {}

    return variants


_WINDOW_HINT = (
    "view as (B, D//Wd, Wd, H//Wh, Wh, W//Ww, Ww, C), permute(0, 1, 3, 5, 2, 4, 6, 7), reshape to (-1, Wd*Wh*Ww, C); "
    "or einops: rearrange(x, 'b (d wd) (h wh) (w ww) c -> (b d h w) (wd wh ww) c', ...)."
)


def _window_bugs(make, reverse=False):
    undo = " (window_reverse must undo exactly that order)" if reverse else ""
    return [
        Bug(
            "window_order",
            "the windows are numbered in the wrong order, grid axes {order} ({slowest}); they must be numbered batch "
            "first, then D slowest and W fastest" + undo + ".",
            "keep the window-grid axes in the order (B, D//Wd, H//Wh, W//Ww). " + _WINDOW_HINT,
            make("window_order"),
        ),
        Bug(
            "batch_order",
            "the batch axis is not the slowest in the window numbering (windows ordered {order}): "
            "all windows of volume 0 "
            "must come first" + undo + ".",
            "keep B first when you flatten the window axes: (b d h w). " + _WINDOW_HINT,
            make("batch_order"),
        ),
        Bug(
            "token_order",
            "the tokens inside each window are in the order {order} instead of row-major (wd, wh, ww)" + undo + ".",
            "flatten the in-window axes in the order (Wd, Wh, Ww). " + _WINDOW_HINT,
            make("token_order"),
        ),
        Bug(
            "strided_windows",
            "the window and grid axes are transposed: each axis was split as (window, grid) instead of (grid, window), "
            "so a 'window' gathers tokens spaced D/Wd apart instead of a contiguous block.",
            "view D as (D//Wd, Wd), grid first. " + _WINDOW_HINT,
            make("strided"),
        ),
        Bug(
            "reshape_without_permute",
            "the grid was reshaped without permuting its axes, so a 'window' is a run of consecutive tokens along W, "
            "not a block.",
            "a reshape alone cannot cut blocks: permute first. " + _WINDOW_HINT,
            make("no_permute"),
        ),
    ]


PARTITION_BUGS = _window_bugs(_partition_variants)
REVERSE_BUGS = _window_bugs(_reverse_variants, reverse=True)


# ----------------------------------------------------------------------------- cyclic shift


def _shift_tuple(shift, ndim=3):
    return (shift,) * ndim if isinstance(shift, int) else tuple(shift)


def _roll_plus(case):
    x, shift = case.args
    yield torch.roll(x, shifts=_shift_tuple(shift), dims=(1, 2, 3)), {}


def _roll_axes_reversed(case):
    x, shift = case.args
    yield torch.roll(x, shifts=tuple(-s for s in _shift_tuple(shift)), dims=(3, 2, 1)), {}


def _roll_wrong_dims(case):
    x, shift = case.args
    s = tuple(-v for v in _shift_tuple(shift))
    for dims in ((0, 1, 2), (2, 3, 4)):
        yield torch.roll(x, shifts=s, dims=dims), {"dims": dims}
    for dims in ((0, 1, 2), (2, 3, 4)):
        yield torch.roll(x, shifts=tuple(-v for v in s), dims=dims), {"dims": dims}


SHIFT_BUGS = [
    Bug(
        "roll_direction",
        "the grid is rolled in the wrong direction, by +shift; cyclic_shift rolls by -shift, so token (d, h, w) moves "
        "to (d - sd, h - sh, w - sw).",
        "torch.roll(x, shifts=(-sd, -sh, -sw), dims=(1, 2, 3)); cyclic_shift(x, -s) is then the undo.",
        _roll_plus,
    ),
    Bug(
        "roll_axes_reversed",
        "the shifts went to the wrong axes: (sd, sh, sw) were applied to (W, H, D).",
        "pair them up in order: shifts=(-sd, -sh, -sw) with dims=(1, 2, 3), the D, H, W axes of (B, D, H, W, C).",
        _roll_axes_reversed,
    ),
    Bug(
        "roll_wrong_dims",
        "the roll moved dims {dims}: the spatial axes of (B, D, H, W, C) are 1, 2, 3; "
        "the batch (0) and channel (4) axes "
        "must not move.",
        "torch.roll(x, shifts=(-sd, -sh, -sw), dims=(1, 2, 3)).",
        _roll_wrong_dims,
    ),
]


# ----------------------------------------------------------------------------- shifted-window mask


def _mask_args(case):
    spatial, window, shift = case.args
    return tuple(spatial), _triple(window), _triple(shift), case.kwargs.get("device")


def _mask_from_labels(labels, window):
    windows = window_partition(labels[None, ..., None], window)[..., 0]
    return windows[:, :, None] == windows[:, None, :]


def _mask_inverted(case):
    yield ~shifted_window_mask(*case.args, **case.kwargs), {}


def _mask_all_true(case):
    yield torch.ones_like(shifted_window_mask(*case.args, **case.kwargs)), {}


def _mask_mirrored(case):
    spatial, window, shift, device = _mask_args(case)
    labels = region_ids(spatial, window, shift, device=device).flip(dims=(0, 1, 2))
    yield _mask_from_labels(labels, window), {}


def _mask_layout(kind):
    def variants(case):
        spatial, window, shift, device = _mask_args(case)
        labels = region_ids(spatial, window, shift, device=device)
        for windows, detail in _partition_layouts(labels[None, ..., None], window, kind):
            w = windows[..., 0]
            yield w[:, :, None] == w[:, None, :], detail

    return variants


MASK_BUGS = [
    Bug(
        "mask_inverted",
        "the mask is inverted: True must mean 'may attend' (both tokens came from the same region), False 'blocked'.",
        "return labels[:, :, None] == labels[:, None, :] (equal region labels), not !=.",
        _mask_inverted,
    ),
    Bug(
        "mask_allows_all",
        "every pair is allowed: tokens that the roll brought in from the far side must not attend to their "
        "new neighbours.",
        "label each token with its region (three per axis: [0, L-W), [L-W, L-s), [L-s, L)), partition the labels into "
        "windows, and allow only pairs with equal labels.",
        _mask_all_true,
    ),
    Bug(
        "regions_mirrored",
        "the regions are placed at the start of each axis ([0, s), [s, W), [W, L)), as for a roll by +shift. After the "
        "roll by -shift the wrapped-around strips sit at the end of the axis.",
        "use the slices [0, L-W), [L-W, L-s), [L-s, L) along each axis of the padded grid.",
        _mask_mirrored,
    ),
    Bug(
        "mask_window_order",
        "the windows of the mask are in the wrong order (grid axes {order}, {slowest}); mask i must belong to window i "
        "of window_partition: D slowest, W fastest.",
        "partition the region labels with your window_partition (or the same permute) so the orders agree.",
        _mask_layout("window_order"),
    ),
    Bug(
        "mask_token_order",
        "the tokens inside each window of the mask are in the order {order} instead of row-major (wd, wh, ww).",
        "partition the region labels with the same layout as window_partition.",
        _mask_layout("token_order"),
    ),
]


# ----------------------------------------------------------------------------- relative position index


def _rpi(window_size, table_window_size=None, device=None, sign=1, strides="offsets", shift=True):
    window = _triple(window_size)
    table = window if table_window_size is None else _triple(table_window_size)
    axes = [torch.arange(w, device=device) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    offsets = sign * (coords[:, None, :] - coords[None, :, :])
    if shift:
        offsets = offsets + torch.tensor(table, device=device) - 1
    sides = [2 * t - 1 for t in table]
    if strides == "window":
        steps = [table[1] * table[2], table[2], 1]
    elif strides == "reversed":
        steps = [1, sides[0], sides[0] * sides[1]]
    else:
        steps = [sides[1] * sides[2], sides[2], 1]
    return (offsets * torch.tensor(steps, device=device)).sum(-1)


def _rpi_variant(**switches):
    def variants(case):
        yield _rpi(*case.args, **{**case.kwargs, **switches}), {}

    return variants


def _rpi_table_ignored(case):
    if case.kwargs.get("table_window_size") is not None:
        yield _rpi(*case.args, device=case.kwargs.get("device")), {}


POSITION_BUGS = [
    Bug(
        "index_transposed",
        "the index is transposed: the offsets are key - query instead of query - key.",
        "offsets = coords[:, None, :] - coords[None, :, :] (query along rows, key along columns), then add W - 1.",
        _rpi_variant(sign=-1),
    ),
    Bug(
        "strides_from_window",
        "the offsets are flattened with strides from the window size W instead of the number of offsets 2W-1: each "
        "axis's offset takes 2W-1 values, so the strides are ((2Wh-1)(2Ww-1), 2Ww-1, 1).",
        "index = d * (2Wh-1) * (2Ww-1) + h * (2Ww-1) + w, with d, h, w the shifted offsets.",
        _rpi_variant(strides="window"),
    ),
    Bug(
        "strides_reversed",
        "the offsets are flattened with W slowest (reversed strides); D must be the slowest axis: "
        "d * (2Wh-1)(2Ww-1) + h * (2Ww-1) + w.",
        "multiply the D offset by (2Wh-1)*(2Ww-1), the H offset by (2Ww-1) and leave W as it is.",
        _rpi_variant(strides="reversed"),
    ),
    Bug(
        "no_offset_shift",
        "the offsets were not shifted by W - 1: they run from -(W-1) to W-1, so some indices are negative.",
        "add W - 1 per axis before flattening, making each offset lie in [0, 2W-2].",
        _rpi_variant(shift=False),
    ),
    Bug(
        "table_ignored",
        "table_window_size is ignored: the offsets must be placed in the larger table's grid, with its W - 1 "
        "and its strides.",
        "use T = table_window_size (when given) for the shift T - 1 and the strides 2T - 1.",
        _rpi_table_ignored,
    ),
]


# ----------------------------------------------------------------------------- heads


def _split_variants(kind):
    def variants(case):
        x, h = case.args
        b, n, c = x.shape
        if kind == "interleaved":
            yield rearrange(x, "b n (d h) -> b h n d", h=h), {}
        elif kind == "no_transpose":
            yield rearrange(x, "b n (h d) -> b n h d", h=h), {}
        else:
            yield x.reshape(b, h, n, c // h), {}

    return variants


def _merge_variants(kind):
    def variants(case):
        (x,) = case.args
        b, h, n, d = x.shape
        if kind == "interleaved":
            yield rearrange(x, "b h n d -> b n (d h)"), {}
        else:
            yield x.reshape(b, n, h * d), {}

    return variants


SPLIT_BUGS = [
    Bug(
        "heads_interleaved",
        "the heads are interleaved: head i took features i, i+h, i+2h, ... instead of the contiguous block "
        "i*d to (i+1)*d (the features were split as (d h) instead of (h d)).",
        "x.view(B, N, h, C // h).transpose(1, 2), or rearrange(x, 'b n (h d) -> b h n d', h=h).",
        _split_variants("interleaved"),
    ),
    Bug(
        "heads_not_transposed",
        "the head axis was not moved in front of the tokens: the output is (B, N, h, d) instead of (B, h, N, d).",
        "after x.view(B, N, h, d), call .transpose(1, 2).",
        _split_variants("no_transpose"),
    ),
    Bug(
        "reshape_without_transpose",
        "x was reshaped straight to (B, h, N, d) without a transpose, which mixes tokens and features.",
        "view as (B, N, h, d) first, then .transpose(1, 2).",
        _split_variants("plain"),
    ),
]

MERGE_BUGS = [
    Bug(
        "heads_interleaved",
        "the heads are interleaved in the output features ((d h) instead of (h d)): head i must fill the contiguous "
        "block i*d to (i+1)*d.",
        "x.transpose(1, 2).reshape(B, N, h * d), or rearrange(x, 'b h n d -> b n (h d)').",
        _merge_variants("interleaved"),
    ),
    Bug(
        "reshape_without_transpose",
        "x was reshaped straight to (B, N, h*d) without moving the heads next to the features first, "
        "which mixes tokens "
        "of different heads.",
        "x.transpose(1, 2) first (giving (B, N, h, d)), then .reshape(B, N, h * d).",
        _merge_variants("plain"),
    ),
]


# ----------------------------------------------------------------------------- cost calculators


def _number(fn):
    def variants(case):
        yield fn(*case.args, **case.kwargs), {}

    return variants


def _patch_volume(patch):
    return math.prod(_triple(patch))


def _patch_area(patch, c, e):
    p = _triple(patch)
    return e * (p[0] * p[1] * c + 1)


def _bytes_args(tokens, dtype=torch.float32, heads=1, batch=1):
    return tokens, torch.empty((), dtype=dtype).element_size(), heads, batch


def _bytes_variant(formula):
    """A wrong byte count: ``formula(tokens, bytes per entry, heads, batch)``."""

    def variants(case):
        yield formula(*_bytes_args(*case.args, **case.kwargs)), {}

    return variants


def _windows_variant(formula, ceil=True):
    """A wrong windowed score count: ``formula(number of windows, tokens per window)``."""

    def variants(case):
        yield formula(*_windows_count(*case.args, ceil=ceil)), {}

    return variants


def _windows_count(shape, window, ceil=True):
    w = (
        _triple(window)
        if len(tuple(shape)) == 3
        else ((window,) * len(shape) if isinstance(window, int) else tuple(window))
    )
    if ceil:
        return math.prod(-(-s // x) for s, x in zip(shape, w)), math.prod(w)
    return math.prod(s // x for s, x in zip(shape, w)), math.prod(w)


PATCH_PARAM_BUGS = [
    Bug(
        "no_bias",
        "the biases are missing: each of the E output features has its own bias.",
        "parameters = E * (p^3 * C + 1): a weight per input number and output feature, plus E biases.",
        _number(lambda p, c, e: e * _patch_volume(p) * c),
    ),
    Bug(
        "one_bias",
        "only one bias was counted; there is one bias per output feature, E of them.",
        "parameters = E * p^3 * C + E = E * (p^3 * C + 1).",
        _number(lambda p, c, e: e * _patch_volume(p) * c + 1),
    ),
    Bug(
        "no_channels",
        "the input channels were left out: a patch flattens to p^3 * C numbers, not p^3.",
        "parameters = E * (p^3 * C + 1).",
        _number(lambda p, c, e: e * (_patch_volume(p) + 1)),
    ),
    Bug(
        "patch_area",
        "the patch's area p^2 (a 2D patch) was used instead of its volume p^3 (pd * ph * pw).",
        "a 3D patch holds pd * ph * pw voxels per channel.",
        _number(_patch_area),
    ),
]

SCORES_BUGS = [
    Bug(
        "not_squared",
        "you returned N; there is one score per query-key pair, N * N of them.",
        "return tokens ** 2.",
        _number(lambda n: n),
    ),
    Bug(
        "half_pairs",
        "each pair was counted once, but scores are not symmetric (q_i . k_j differs from q_j . k_i): "
        "all N^2 are needed.",
        "return tokens ** 2.",
        lambda case: iter([(case.args[0] * (case.args[0] + 1) // 2, {}), (case.args[0] ** 2 // 2, {})]),
    ),
    Bug(
        "no_self_pairs",
        "the pairs of a token with itself were left out; attention includes them: N^2, not N(N-1).",
        "return tokens ** 2.",
        _number(lambda n: n * (n - 1)),
    ),
]

BYTES_BUGS = [
    Bug(
        "counted_entries",
        "you counted entries, not bytes: each entry takes the dtype's size "
        "(4 bytes in float32, 2 in float16, 8 in float64).",
        "multiply by torch.empty((), dtype=dtype).element_size().",
        _bytes_variant(lambda n, s, h, b: n * n * h * b),
    ),
    Bug(
        "counted_bits",
        "you counted bits; a byte has 8 bits, and the function returns bytes.",
        "use the element size in bytes: torch.empty((), dtype=dtype).element_size().",
        _bytes_variant(lambda n, s, h, b: n * n * h * b * s * 8),
    ),
    Bug(
        "fixed_4_bytes",
        "you always used 4 bytes per entry; the size depends on dtype (float16: 2, float64: 8).",
        "bytes per entry = torch.empty((), dtype=dtype).element_size().",
        _bytes_variant(lambda n, s, h, b: n * n * h * b * 4),
    ),
    Bug(
        "returned_gib",
        "you returned GiB; this function returns bytes.",
        "do not divide by 1024**3.",
        _number(lambda *a, **k: cost.attention_matrix_bytes(*a, **k) / 1024**3),
    ),
    Bug(
        "heads_ignored",
        "heads were ignored: every head has its own N x N score matrix.",
        "multiply by heads (and by batch).",
        _bytes_variant(lambda n, s, h, b: n * n * b * s),
    ),
    Bug(
        "batch_ignored",
        "batch was ignored: every item of the batch has its own score matrices.",
        "multiply by batch (and by heads).",
        _bytes_variant(lambda n, s, h, b: n * n * h * s),
    ),
]

WINDOW_SCORES_BUGS = [
    Bug(
        "no_padding",
        "the windows were counted with floor division; a grid that the window does not divide is padded up to whole "
        "windows, so count them with ceil.",
        "windows per axis = -(-size // window) (ceil division).",
        _windows_variant(lambda n, v: n * v * v, ceil=False),
    ),
    Bug(
        "global_scores",
        "you counted global attention, N^2; with windows each token only sees its own window's tokens.",
        "scores = number of windows * (tokens per window)^2.",
        _number(lambda shape, window: math.prod(shape) ** 2),
    ),
    Bug(
        "one_window",
        "you counted the scores of a single window; multiply by the number of windows.",
        "scores = number of windows * (tokens per window)^2.",
        _number(lambda shape, window: _windows_count(shape, window)[1] ** 2),
    ),
    Bug(
        "window_not_squared",
        "you counted tokens (windows * tokens per window), not scores: a window of n tokens has n^2 scores.",
        "scores = number of windows * (tokens per window)^2.",
        _windows_variant(lambda n, v: n * v),
    ),
]


BUGS: dict[str, list[Bug]] = {
    "softmax": SOFTMAX_BUGS,
    "scaled_dot_product_attention": ATTENTION_BUGS,
    "patchify": PATCHIFY_BUGS,
    "unpatchify": UNPATCHIFY_BUGS,
    "window_partition": PARTITION_BUGS,
    "window_reverse": REVERSE_BUGS,
    "cyclic_shift": SHIFT_BUGS,
    "shifted_window_mask": MASK_BUGS,
    "relative_position_index": POSITION_BUGS,
    "split_heads": SPLIT_BUGS,
    "merge_heads": MERGE_BUGS,
    "patch_embed_params": PATCH_PARAM_BUGS,
    "attention_scores": SCORES_BUGS,
    "attention_matrix_bytes": BYTES_BUGS,
    "windowed_attention_scores": WINDOW_SCORES_BUGS,
}
