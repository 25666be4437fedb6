"""Windows: partition, reverse, cyclic shift, the shifted-window mask, and what the shift buys (lesson 05).

Function exercises: ``window_partition``, ``window_reverse``, ``cyclic_shift``,
``shifted_window_mask`` (implement it), ``windows_with_blocked_pairs`` and
``layers_to_reach_all`` (compute it with a small function). Value exercise:
``windows_32x64x64_w8``. Concept questions: ``concept_what_windows_keep``,
``concept_why_mask_after_shift``, ``concept_which_pairs_attend`` and
``concept_reach_grows_linearly``. Every hidden grid has a different number of windows
along D, H and W (but for one tiny hand case), unequal windows and shifts per
axis, batch > 1 and channels > 1, in float32 and float64.
"""

from __future__ import annotations

import functools
import math
from itertools import permutations

import torch
from einops import rearrange

from ... import cost
from ...receptive_field import layers_to_cover, propagate, receptive_field, receptive_field_growth
from ...sizes import as_triple
from ...windows import cyclic_shift, region_ids, shifted_window_mask, window_partition, window_reverse
from ..exercise import (
    F32,
    F64,
    GRID_AXES,
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    ValueExercise,
    WrongAnswer,
    arange,
    axes_text,
    graders_own,
    number_variant,
    randn,
)

# ----------------------------------------------------------------------------- cases


def _windows_per_axis(spatial, window) -> str:
    return " x ".join(str(s // w) for s, w in zip(spatial, as_triple(window)))


# (grid (B, D, H, W, C), window, dtype, arange or random): windows per axis all different, batch and channels > 1,
# but for the first, tiny hand case.
_PARTITION_GRIDS = (
    ((1, 2, 4, 6, 1), 2, F64, "arange"),
    ((2, 4, 9, 8, 3), (2, 3, 2), F64, "arange"),
    ((3, 3, 8, 10, 2), (3, 2, 5), F32, "random"),
    ((2, 8, 6, 3, 4), (2, 3, 1), F64, "random"),
    ((2, 6, 10, 12, 3), (2, 5, 3), F32, "random"),
)


def window_partition_cases(device):
    g = torch.Generator().manual_seed(3)
    out = []
    for shape, window, dtype, kind in _PARTITION_GRIDS:
        x = arange(shape, dtype, device) if kind == "arange" else randn(g, shape, dtype, device)
        label = (
            f"{kind} grid {shape}, window {window}: {_windows_per_axis(shape[1:4], window)} windows per volume "
            f"({str(dtype).replace('torch.', '')})"
        )
        out.append(Case(label, (x, window)))
    return out


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
        Case("arange grid (1, 3, 4, 5, 1), shift 1 (float64)", (arange((1, 3, 4, 5, 1), F64, device), 1)),
        Case(
            "arange grid (2, 4, 6, 8, 3), shift (1, 2, 3) (float64)", (arange((2, 4, 6, 8, 3), F64, device), (1, 2, 3))
        ),
        Case(
            "random grid (2, 6, 4, 5, 2), negative shift (-2, 1, -1) (float32)",
            (randn(g, (2, 6, 4, 5, 2), F32, device), (-2, 1, -1)),
        ),
        Case(
            "random grid (3, 5, 4, 7, 2), shift (2, 0, 3) (float32)",
            (randn(g, (3, 5, 4, 7, 2), F32, device), (2, 0, 3)),
        ),
        Case(
            "random grid (2, 7, 5, 6, 3), shift (3, -2, 1) (float64)",
            (randn(g, (2, 7, 5, 6, 3), F64, device), (3, -2, 1)),
        ),
    ]


# (grid, window, shift): the first is the lesson's row of 8 tokens; then windows per axis all different,
# unequal windows and shifts, a shift of 0 along one axis, and shifts other than window // 2.
_MASK_GRIDS = (
    ((1, 1, 8), (1, 1, 4), (0, 0, 2)),
    ((4, 9, 16), (2, 3, 4), (1, 1, 2)),
    ((6, 8, 5), (3, 2, 5), (1, 1, 0)),
    ((8, 6, 12), (4, 2, 3), (2, 1, 1)),
    ((9, 8, 2), (3, 4, 2), (2, 3, 1)),
)


def shifted_window_mask_cases(device):
    return [
        Case(
            f"grid {grid}, window {window}, shift {shift}: {_windows_per_axis(grid, window)} windows",
            (grid, window, shift),
            {"device": device},
        )
        for grid, window, shift in _MASK_GRIDS
    ]


# (grid, window, shift) for counting the windows that hold a blocked pair. The lesson's 8^3 example comes second:
# there the windows without a blocked pair and the corner window alone are both 1, so a learner counting either
# would be told of both; the first case tells them apart.
_BLOCKED_GRIDS = (
    ((4, 9, 16), (2, 3, 4), (1, 1, 2)),
    ((8, 8, 8), 4, 2),
    ((6, 12, 8), (3, 4, 2), (1, 0, 1)),
    ((9, 8, 5), (3, 4, 5), (1, 2, 0)),
    ((4, 6, 10), (4, 3, 5), (2, 1, 2)),
    ((6, 6, 4), (3, 2, 4), (0, 0, 0)),
)


def windows_with_blocked_pairs_cases(device):
    out = []
    for grid, window, shift in _BLOCKED_GRIDS:
        note = " (the lesson's example)" if grid == (8, 8, 8) else ""
        note = " (no shift at all)" if not any(as_triple(shift)) else note
        out.append(
            Case(
                f"grid {grid}, window {window}, shift {shift}: {_windows_per_axis(grid, window)} windows{note}",
                (grid, window, shift),
            )
        )
    return out


# (grid, window, token): grids larger than the window along every axis, so every shift is window // 2 > 0.
_REACH_GRIDS = (
    ((8, 8, 8), 4, (0, 0, 0)),
    ((4, 6, 8), (2, 2, 4), (0, 0, 0)),
    ((8, 6, 9), (4, 2, 3), (3, 2, 4)),
    ((8, 6, 12), (4, 2, 3), (4, 3, 6)),
)


def layers_to_reach_all_cases(device):
    out = []
    for grid, window, token in _REACH_GRIDS:
        _reach_all(grid, window, token)  # computed (and cached) now, off the check's clock
        note = " (the lesson's example)" if grid == (8, 8, 8) else ""
        out.append(Case(f"grid {grid}, window {window}, token {token}{note}", (grid, window, token)))
    return out


# ----------------------------------------------------------------------------- windows

_WINDOW_AXES = ("wd", "wh", "ww")
_SLOWEST = {"d": "D slowest", "h": "H slowest", "w": "W slowest"}


def _window_layouts(kind):
    """(window order, token order, strided, detail) for one family of window-layout bugs."""
    if kind == "window_order":
        for order in permutations(GRID_AXES):
            if order != GRID_AXES:
                yield ("b", *order), _WINDOW_AXES, False, {"order": axes_text(order), "slowest": _SLOWEST[order[0]]}
    elif kind == "batch_order":
        for i in range(1, 4):
            order = [*GRID_AXES]
            order.insert(i, "b")
            yield tuple(order), _WINDOW_AXES, False, {"order": axes_text(order)}
    elif kind == "token_order":
        for inner in permutations(_WINDOW_AXES):
            if inner != _WINDOW_AXES:
                yield ("b", *GRID_AXES), inner, False, {"order": axes_text(inner)}
    elif kind == "strided":
        yield ("b", *GRID_AXES), _WINDOW_AXES, True, {}


def _window_pattern(order, inner, strided):
    split = "(wd d) (wh h) (ww w)" if strided else "(d wd) (h wh) (w ww)"
    return f"b {split} c", f"({' '.join(order)}) ({' '.join(inner)}) c"


def _window_sizes(window) -> dict:
    return dict(zip(_WINDOW_AXES, as_triple(window)))


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
        yield x.reshape(-1, math.prod(as_triple(window)), x.shape[-1]), {}


def _reverse_variants(kind):
    def variants(case):
        windows, window, spatial = case.args
        w = as_triple(window)
        sizes = _window_sizes(window) | dict(zip(GRID_AXES, (s // x for s, x in zip(spatial, w))))
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


def _roll_plus(case):
    x, shift = case.args
    yield torch.roll(x, shifts=as_triple(shift), dims=(1, 2, 3)), {}


def _roll_axes_reversed(case):
    x, shift = case.args
    yield torch.roll(x, shifts=tuple(-s for s in as_triple(shift)), dims=(3, 2, 1)), {}


def _roll_one_shift(case):
    x, shift = case.args
    for s in dict.fromkeys(as_triple(shift)):
        yield torch.roll(x, shifts=(-s, -s, -s), dims=(1, 2, 3)), {"shift": s}


def _roll_wrong_dims(case):
    x, shift = case.args
    s = tuple(-v for v in as_triple(shift))
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
    Bug(
        "one_shift_for_all_axes",
        "the grid was rolled by {shift} along all three axes; each axis has its own shift (sd, sh, sw).",
        "unpack the three shifts, sd, sh, sw = as_triple(shift), and pass shifts=(-sd, -sh, -sw) with dims=(1, 2, 3).",
        _roll_one_shift,
    ),
]


# ----------------------------------------------------------------------------- shifted-window mask


def _mask_args(case):
    spatial, window, shift = case.args
    return tuple(spatial), as_triple(window), as_triple(shift), case.kwargs.get("device")


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


def _axis_regions(length, w, s, device):
    coord = torch.arange(length, device=device)
    return (coord >= length - w).long() + (coord >= length - s).long() if s else torch.zeros_like(coord)


def _mask_labels_summed(case):
    spatial, window, shift, device = _mask_args(case)
    d, h, w = (_axis_regions(*args, device) for args in zip(spatial, window, shift))
    labels = d[:, None, None] + h[None, :, None] + w[None, None, :]
    yield _mask_from_labels(labels, window), {}


def _mask_half_window(case):
    spatial, window, shift, device = _mask_args(case)
    half = tuple(w // 2 if s else 0 for w, s in zip(window, shift))
    yield _mask_from_labels(region_ids(spatial, window, half, device=device), window), {}


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
    Bug(
        "labels_summed",
        "the three per-axis region labels were added up, so different regions share a label (region 1 along D and 2 "
        "along H gives 3, and so does 2 along D and 1 along H): tokens from different regions may attend.",
        "combine the labels so that each triple gets its own number: label_d * 9 + label_h * 3 + label_w.",
        _mask_labels_summed,
    ),
    Bug(
        "half_window_shift",
        "the regions were cut at window // 2 instead of the shift that was passed in: the mask must follow the "
        "actual shift (sd, sh, sw), whatever its size.",
        "use the slices [0, L-W), [L-W, L-s), [L-s, L) with s the shift argument of each axis.",
        _mask_half_window,
    ),
]


# ----------------------------------------------------------------------------- windows with a blocked pair


def windows_with_blocked_pairs(spatial_shape, window_size, shift) -> int:
    """Windows of the shifted grid holding at least one blocked pair (a False anywhere in their mask)."""
    mask = shifted_window_mask(spatial_shape, window_size, shift)  # (nW, N, N)
    return int((~mask).flatten(1).any(dim=1).sum())


def _mask_of(case):
    return shifted_window_mask(*case.args)


def _blocked_corner_only(spatial_shape, window_size, shift):
    shifts = as_triple(shift)
    if not any(shifts):
        return 0
    counts = [s // w for s, w in zip(spatial_shape, as_triple(window_size))]
    return math.prod(1 if s else n for s, n in zip(shifts, counts))


BLOCKED_BUGS = [
    Bug(
        "counted_blocked_pairs",
        "you counted blocked pairs (False entries of the mask), not windows.",
        "a window counts once if any of its pairs is blocked: (~mask).flatten(1).any(dim=1).sum().",
        lambda case: iter([(int((~_mask_of(case)).sum()), {})]),
    ),
    Bug(
        "counted_unmasked_windows",
        "you counted the windows with NO blocked pair, the ones the mask leaves alone.",
        "count the others: a window needs the mask if some pair in it is False.",
        lambda case: iter([(int(_mask_of(case).flatten(1).all(dim=1).sum()), {})]),
    ),
    Bug(
        "counted_every_window",
        "you counted every window: each window has pairs that may attend (a token with itself), so looking for a "
        "True finds them all; the question is about a False.",
        "look for blocked pairs: (~mask).flatten(1).any(dim=1).sum().",
        lambda case: iter([(int(_mask_of(case).flatten(1).any(dim=1).sum()), {})]),
    ),
    Bug(
        "corner_window_only",
        "you counted only the windows that are last along every shifted axis; a window that is last along just ONE "
        "shifted axis already mixes two regions there.",
        "along a shifted axis the last window straddles [L-W, L-s) and [L-s, L); a window is free of blocked pairs "
        "only if it is not last along any shifted axis.",
        number_variant(_blocked_corner_only),
    ),
]


# ----------------------------------------------------------------------------- layers until the whole grid is reached


@functools.lru_cache(maxsize=64)
def _layers_until_covered(grid: tuple, window: tuple, token: tuple, max_layers: int = 200) -> int:
    """Layer after layer through minattn's own masks (``propagate``); cached, as a check asks the same cases again."""
    half = tuple(w // 2 for w in window)
    reached = torch.zeros(grid, dtype=torch.bool)
    reached[tuple(token)] = True
    layers = 0
    while not bool(reached.all()):
        if layers >= max_layers:
            raise RuntimeError(f"the grid {grid} is not covered after {max_layers} layers")
        layers += 1
        shift = half if layers % 2 == 0 else (0, 0, 0)
        reached = propagate(reached[..., None], window, [shift])[..., 0]
    return layers


def _reach_all(grid_shape, window_size, token) -> int:
    return _layers_until_covered(tuple(grid_shape), as_triple(window_size), tuple(int(t) for t in token))


def layers_to_reach_all(grid_shape, window_size, token) -> int:
    """Layers (1: regular windows, 2: shifted by window // 2, 3: regular, ...) until ``token`` reaches every token."""
    return _reach_all(grid_shape, window_size, token)


# Starting with the shifted layer gives one layer more or one fewer than the answer, just as an off-by-one
# count does, so neither is named (the two cannot be told apart on one case).
REACH_BUGS = [
    Bug(
        "token_ignored",
        "your count starts from the corner token (0, 0, 0) whatever `token` is; start from the token passed in.",
        "reached = torch.zeros(grid_shape, dtype=torch.bool); reached[tuple(token)] = True.",
        number_variant(lambda grid, window, token: _reach_all(grid, window, (0, 0, 0))),
    ),
]


# ----------------------------------------------------------------------------- exercises

_MONAI_SWIN = "monai.networks.nets.swin_unetr"
_LAYOUT_BLOCKS = "view/reshape and permute, or einops.rearrange"
_GRID_32x64x64 = (32, 64, 64)


def _windows_32x64x64() -> int:
    # An 8^3 window covers the grid as an 8^3 patch would: one window per block of 8 x 8 x 8 tokens.
    return cost.num_tokens(_GRID_32x64x64, 8)


# ----------------------------------------------------------------------------- concept questions

CONCEPT_QUESTIONS = [
    # After exercise 5.1.
    ChoiceExercise(
        "concept_what_windows_keep",
        "one layer of attention in 8 x 8 x 8 windows on a 128 x 128 x 128 token grid (two are right)",
        {
            "a": "global attention on the same grid computes 4096 times as many scores",
            "b": "the saving comes from fewer tokens: each 8 x 8 x 8 window is merged into one token before attention",
            "c": "each token is still compared with 512 tokens, itself included, and every token of the grid gets "
            "an output",
            "d": "changing one token can alter the outputs of tokens in the neighbouring windows, because windows "
            "share their border tokens",
        },
        frozenset({"a", "c"}),
        why={
            "b": "that would be patch merging, a coarser grid; windowed attention keeps every token at full "
            "resolution and only limits whom each token is compared with.",
            "d": "windows do not overlap: each token belongs to exactly one window, and in a layer without a shift "
            "nothing passes from one window to another (the lesson changed one token and counted the outputs "
            "that moved).",
        },
    ),
    # After the row example of the mask (exercise 5.5).
    ChoiceExercise(
        "concept_why_mask_after_shift",
        "why the shifted layer needs a mask and the regular layer does not",
        {
            "a": "the roll makes the shifted windows larger than the regular ones, and the mask trims them back to "
            "the regular size",
            "b": "the roll empties a strip at one end of each axis and fills it with zeros; the mask stops tokens "
            "from attending to those zeros",
            "c": "a regular window is one block of neighbouring tokens; after the roll, the last window along an "
            "axis also holds tokens from the opposite face of the volume, and only the pairs that the wrap-around "
            "brought together must be kept apart",
            "d": "the mask stops a shifted window from mixing tokens of different regular windows, so that the "
            "shift does not change what each token sees",
        },
        "c",
        why={
            "a": "torch.roll moves tokens and keeps the grid's shape: the shifted layer has as many windows as the "
            "regular one, of the same size.",
            "b": "nothing is zero-filled: a roll only moves tokens, and the strip at the end of an axis holds real "
            "tokens that came round from the other end.",
            "d": "mixing tokens of different regular windows is what the shift is for: it is how information "
            "crosses window borders. Tokens of two regular windows that are neighbours in the volume may attend "
            "to each other.",
        },
    ),
    # After exercise 5.6.
    ChoiceExercise(
        "concept_which_pairs_attend",
        "pairs that may attend to each other in the shifted layer of the 8 x 8 grid (two are right)",
        {
            "a": "tokens 7 and 0",
            "b": "tokens 27 and 36",
            "c": "tokens 5 and 6",
            "d": "tokens 54 and 63",
        },
        frozenset({"b", "d"}),
        why={
            "a": "7 and 0 share a window and sit side by side in the rolled grid, but 0 got there by wrapping "
            "around along W: in the volume they lie at the two ends of the top row. A pair must come from the "
            "same region along every axis.",
            "c": "5 and 6 are neighbours in the volume, but in the rolled grid a window border runs between them: "
            "they sit in different shifted windows, and attention never crosses a window, whatever the mask says "
            "(they did share a window in the regular layer).",
        },
    ),
    # After exercise 5.7.
    ChoiceExercise(
        "concept_reach_grows_linearly",
        "layers until the corner token's information has reached every token of a 128 x 128 grid (windows of 4)",
        {
            "a": "about 33: the reach doubles with every pair of layers, so doubling the side costs one more pair",
            "b": "about 63: the distance to cover doubles, and each layer advances the reach by the same number "
            "of tokens",
            "c": "about 124: the grid holds four times as many tokens as the 64 x 64 one",
            "d": "31 again: once shifted windows link neighbouring windows, all windows are linked, whatever the "
            "size of the grid",
        },
        "b",
        why={
            "a": "the reach does not grow by a factor: each layer moves the edge of the reached region by a fixed "
            "number of tokens, set by the window, however large the region already is.",
            "c": "the layers follow the distance to cover, a length, not the number of tokens, an area: the reach "
            "spreads along both axes at once.",
            "d": "a shifted layer links each window only to the windows next to it; a window farther away is "
            "reached only after more layers.",
        },
    ),
]


EXERCISES = [
    FunctionExercise(
        "window_partition",
        window_partition,
        window_partition_cases,
        "tensor",
        "window_partition(x, window_size)",
        bugs=tuple(PARTITION_BUGS),
        ruled_out=(
            RuledOut("minattn.window_partition", (window_partition,)),
            RuledOut("MONAI's window_partition", (f"{_MONAI_SWIN}:window_partition",)),
        ),
        building_blocks=_LAYOUT_BLOCKS,
    ),
    FunctionExercise(
        "window_reverse",
        window_reverse,
        window_reverse_cases,
        "tensor",
        "window_reverse(windows, window_size, spatial_shape)",
        bugs=tuple(REVERSE_BUGS),
        ruled_out=(
            RuledOut("minattn.window_reverse", (window_reverse,)),
            RuledOut("MONAI's window_reverse", (f"{_MONAI_SWIN}:window_reverse",)),
        ),
        building_blocks=_LAYOUT_BLOCKS,
    ),
    FunctionExercise(
        "cyclic_shift",
        cyclic_shift,
        cyclic_shift_cases,
        "tensor",
        "cyclic_shift(x, shift)",
        bugs=tuple(SHIFT_BUGS),
        ruled_out=(RuledOut("minattn.cyclic_shift", (cyclic_shift,)),),
        building_blocks="torch.roll",
    ),
    FunctionExercise(
        "shifted_window_mask",
        shifted_window_mask,
        shifted_window_mask_cases,
        "mask",
        "shifted_window_mask(spatial_shape, window_size, shift, device=None)",
        bugs=tuple(MASK_BUGS),
        ruled_out=(
            RuledOut("minattn.shifted_window_mask / minattn.windows.region_ids", (shifted_window_mask, region_ids)),
            RuledOut("MONAI's compute_mask", (f"{_MONAI_SWIN}:compute_mask",)),
        ),
        building_blocks="a label grid (torch.zeros, slices), window_partition and ==",
    ),
    ValueExercise(
        "windows_32x64x64_w8",
        "8 x 8 x 8 windows covering a 32 x 64 x 64 token grid",
        _windows_32x64x64,
        unit=None,
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "tokens",
                lambda: cost.num_tokens(_GRID_32x64x64),
                "that is the number of tokens; a window holds 8 x 8 x 8 of them, so divide each side by 8 first.",
            ),
            WrongAnswer(
                "divided_by_8_once",
                lambda: cost.num_tokens(_GRID_32x64x64) // 8,
                "that divides the token count by 8 once; a window is 8 tokens along each of the three axes, "
                "8^3 = 512 tokens.",
            ),
            WrongAnswer(
                "tokens_per_window",
                lambda: cost.num_tokens((8, 8, 8)),
                "that is the number of tokens in one window, not the number of windows.",
            ),
            WrongAnswer(
                "added_axes",
                lambda: sum(s // 8 for s in _GRID_32x64x64),
                "that adds the windows per axis; the windows form a grid, so multiply them: (32/8)(64/8)(64/8).",
            ),
        ),
    ),
    FunctionExercise(
        "windows_with_blocked_pairs",
        windows_with_blocked_pairs,
        windows_with_blocked_pairs_cases,
        "number",
        "windows_with_blocked_pairs(spatial_shape, window_size, shift)",
        bugs=tuple(BLOCKED_BUGS),
        ruled_out=(graders_own(windows_with_blocked_pairs),),
        building_blocks="minattn.shifted_window_mask (or the region rule) and a count over windows",
    ),
    FunctionExercise(
        "layers_to_reach_all",
        layers_to_reach_all,
        layers_to_reach_all_cases,
        "number",
        "layers_to_reach_all(grid_shape, window_size, token)",
        bugs=tuple(REACH_BUGS),
        ruled_out=(
            RuledOut(
                "minattn.receptive_field (layers_to_cover, receptive_field, receptive_field_growth, propagate)",
                (layers_to_cover, receptive_field, receptive_field_growth, propagate),
            ),
            graders_own(layers_to_reach_all),
        ),
        building_blocks="the notebook's spread, applied layer after layer in a loop",
    ),
    *CONCEPT_QUESTIONS,
]
