"""The long-range case: how many layers until a tumour's token has heard from a distant metastasis.

Global attention links any two tokens in one layer, at ``N^2`` scores.
Windows never link tokens in different windows. Shifted windows link them
after a number of layers that grows *linearly* with their distance: once the
field spans a window, each layer extends it by a whole window on one side,
the sides alternating from layer to layer. A hierarchical Swin (SwinUNETR: windows of 7, two blocks per stage,
patch merging between stages) halves every distance in tokens at each
merge, so the layers needed grow only with the *logarithm* of the distance.

Everything here is computed through the real masks of
:mod:`minattn.receptive_field` (:func:`~minattn.receptive_field.propagate`),
plus one new step: composing receptive fields across a patch merge. A
merged token reads the 2 x 2 x 2 block of fine tokens it was made from
(:class:`minattn.PatchMerging`), so going backwards through a merge a set of
coarse tokens becomes the union of their blocks (:func:`coarse_to_fine`).

Grids are ``(D, H, W)`` or ``(H, W)`` token grids; fields are bool tensors of
the grid's shape; tokens are tuples of grid coordinates.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .. import cost
from .._validate import as_size_tuple, ceil_div
from ..receptive_field import default_max_layers, propagate, receptive_field_growth
from ..windows import WindowLayout, swin_shifts

__all__ = [
    "coarse_to_fine",
    "fine_to_coarse",
    "hierarchical_cost",
    "hierarchical_layers_to_link",
    "hierarchical_receptive_field",
    "layers_to_link",
    "merged_grid",
    "merged_token",
    "stage_grids",
]


def _grid(grid_shape) -> tuple[int, ...]:
    grid = tuple(grid_shape)
    if len(grid) not in (2, 3):
        raise ValueError(f"grid_shape must be (D, H, W) or (H, W); received {grid}")
    return as_size_tuple(grid, len(grid), "grid_shape")


def _token(grid: tuple[int, ...], token: Sequence[int], name: str = "token") -> tuple[int, ...]:
    token = tuple(int(t) for t in token)
    if len(token) != len(grid) or any(not 0 <= t < g for t, g in zip(token, grid)):
        raise ValueError(f"{name} must be {len(grid)} coordinates inside the grid {grid}; received {token}")
    return token


def _positive_int(value, name: str, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; received {value!r}")
    return value


# -- patch merging -----------------------------------------------------------------------------


def merged_grid(grid_shape) -> tuple[int, ...]:
    """Token grid after one patch merge: every extent halved, rounded up (an odd extent is padded)."""
    return tuple(ceil_div(g, 2) for g in _grid(grid_shape))


def merged_token(token: Sequence[int]) -> tuple[int, ...]:
    """The coarse token that a fine token is merged into: its coordinates halved, rounded down."""
    return tuple(int(t) // 2 for t in token)


def stage_grids(grid_shape, stages: int) -> list[tuple[int, ...]]:
    """The token grid of each of ``stages`` stages, halving (rounded up) between consecutive stages."""
    grids = [_grid(grid_shape)]
    for _ in range(_positive_int(stages, "stages") - 1):
        grids.append(merged_grid(grids[-1]))
    return grids


def coarse_to_fine(field: torch.Tensor, fine_shape) -> torch.Tensor:
    """Backwards through a patch merge: coarse tokens -> the fine tokens they were merged from.

    Coarse token ``c`` is made of the fine tokens ``2c .. 2c + 1`` along every
    axis (the 2 x 2 x 2 block :class:`minattn.PatchMerging` concatenates), so
    whatever had reached any of them has reached ``c``. Positions that fall in
    the merge's padding (odd extents) are dropped.

    Args:
        field: bool ``merged_grid(fine_shape)``: a set of coarse tokens.
        fine_shape: the grid before the merge, ``(D, H, W)`` or ``(H, W)``.

    Returns:
        bool ``fine_shape``: the union of the blocks of the tokens in ``field``.
    """
    fine = _grid(fine_shape)
    coarse = merged_grid(fine)
    if not isinstance(field, torch.Tensor) or tuple(field.shape) != coarse:
        raise ValueError(
            f"field must be a tensor of the merged grid {coarse} for a fine grid {fine}; "
            f"received {tuple(getattr(field, 'shape', ())) or type(field).__name__}"
        )
    out = field.bool()
    for axis in range(len(fine)):
        out = out.repeat_interleave(2, dim=axis)
    return out[tuple(slice(0, g) for g in fine)].contiguous()


def fine_to_coarse(field: torch.Tensor) -> torch.Tensor:
    """Forwards through a patch merge: a coarse token is in the set if any token of its block is.

    Args:
        field: bool ``(D, H, W)`` or ``(H, W)``.

    Returns:
        bool ``merged_grid(field.shape)``.
    """
    if not isinstance(field, torch.Tensor) or field.ndim not in (2, 3):
        raise ValueError(f"field must be a bool tensor (D, H, W) or (H, W); received {getattr(field, 'shape', field)}")
    fine = tuple(field.shape)
    pad = []
    for g in reversed(fine):  # F.pad wants the last axis first
        pad += [0, g % 2]
    x = torch.nn.functional.pad(field.float()[None, None], pad)
    pool = torch.nn.functional.max_pool3d if field.ndim == 3 else torch.nn.functional.max_pool2d
    return pool(x, 2)[0, 0] > 0


# -- flat stacks of window layers --------------------------------------------------------------


def layers_to_link(grid_shape, window_size, source, target, shifted: bool = True, max_layers: int | None = None):
    """Fewest window-attention layers after which ``target``'s information has reached ``source``.

    One stage of a Swin model on one grid: layer 1 regular windows, layer 2
    shifted by ``window // 2``, alternating (``shifted=False``: every layer
    regular). Equivalent to the smallest ``L`` with
    ``receptive_field(grid, window, source, L, shifted)[target]``, computed in
    ``O(L)`` layer steps.

    Returns:
        The number of layers (0 when ``source == target``), or None when the
        field stops growing (or ``max_layers``, default :func:`default_max_layers`,
        is reached) without containing ``target``.
    """
    grid = _grid(grid_shape)
    window = as_size_tuple(window_size, len(grid), "window_size")
    source, target = _token(grid, source, "source"), _token(grid, target, "target")
    if source == target:
        return 0
    if max_layers is None:
        max_layers = default_max_layers(grid)
    # receptive_field_growth gives every depth up to a maximum in linear time (and builds each mask
    # once per call); double the maximum until the target is inside or the field stops growing.
    depth = min(8, max_layers)
    while True:
        fields = receptive_field_growth(grid, window, source, depth, shifted=shifted)
        for layers, field in enumerate(fields):
            if bool(field[target]):
                return layers
        sizes = [int(f.sum()) for f in fields[-3:]]
        if depth >= max_layers or (len(sizes) == 3 and sizes[0] == sizes[1] == sizes[2]):
            return None
        depth = min(2 * depth, max_layers)


# -- hierarchical Swin -------------------------------------------------------------------------


def _stage_of(block: int, blocks_per_stage: int) -> int:
    """0-based stage of 1-based ``block``."""
    return (block - 1) // blocks_per_stage


def hierarchical_receptive_field(
    grid_shape, window_size, token, blocks: int, blocks_per_stage: int = 2, shifted: bool = True
) -> torch.Tensor:
    """Input tokens that have reached ``token`` after ``blocks`` blocks of a hierarchical Swin.

    The model: stage 0 runs ``blocks_per_stage`` blocks on ``grid_shape``
    (regular windows, then shifted, alternating), a patch merge halves the
    grid, stage 1 runs its blocks on the merged grid with the same window
    size (in its own, coarser tokens; a window larger than the grid shrinks
    to it, as Swin does), and so on. After ``blocks`` blocks the model is in
    stage ``s = (blocks - 1) // blocks_per_stage``, where ``token`` lives in
    the coarse token ``token // 2**s``; that token's field is traced back
    through the stage's blocks, then :func:`coarse_to_fine` through each
    merge, down to the input grid.

    Args:
        grid_shape: the input token grid ``(D, H, W)`` or ``(H, W)``.
        window_size: an int or one int per axis (7 in SwinUNETR).
        token: coordinates on the input grid.
        blocks: number of attention blocks, >= 0.
        blocks_per_stage: blocks before each merge (2 in SwinUNETR).
        shifted: alternate regular and shifted windows inside each stage.

    Returns:
        bool tensor of ``grid_shape``.
    """
    grid = _grid(grid_shape)
    window = as_size_tuple(window_size, len(grid), "window_size")
    token = _token(grid, token)
    _positive_int(blocks, "blocks", allow_zero=True)
    per_stage = _positive_int(blocks_per_stage, "blocks_per_stage")
    if blocks == 0:
        field = torch.zeros(grid, dtype=torch.bool)
        field[token] = True
        return field
    last = _stage_of(blocks, per_stage)
    grids = stage_grids(grid, last + 1)
    coarse = tuple(t >> last for t in token)  # t // 2**last
    field = torch.zeros(grids[last], dtype=torch.bool)
    field[coarse] = True
    for stage in range(last, -1, -1):
        first = stage * per_stage + 1
        stop = min((stage + 1) * per_stage, blocks)
        # backwards: the last block of the stage first
        shifts = swin_shifts(window, stop - first + 1, shifted)[::-1]
        field = propagate(field[..., None], window, shifts)[..., 0]
        if stage > 0:
            field = coarse_to_fine(field, grids[stage - 1])
    return field


def hierarchical_layers_to_link(
    grid_shape,
    window_size,
    source,
    target,
    blocks_per_stage: int = 2,
    shifted: bool = True,
    max_blocks: int | None = None,
):
    """Fewest blocks of a hierarchical Swin after which ``target`` has reached ``source``.

    Returns:
        The number of blocks, or None if not linked within ``max_blocks``
        (default: enough stages to merge the grid down to one token, plus one).
    """
    grid = _grid(grid_shape)
    source, target = _token(grid, source, "source"), _token(grid, target, "target")
    per_stage = _positive_int(blocks_per_stage, "blocks_per_stage")
    if source == target:
        return 0
    if max_blocks is None:
        max_blocks = per_stage * (math.ceil(math.log2(max(grid))) + 2)
    for blocks in range(1, max_blocks + 1):
        if bool(hierarchical_receptive_field(grid, window_size, source, blocks, per_stage, shifted)[target]):
            return blocks
    return None


def hierarchical_cost(grid_shape, window_size, blocks: int, blocks_per_stage: int = 2, shifted: bool = True) -> int:
    """Attention scores computed by the first ``blocks`` blocks of a hierarchical Swin (all windows, one head).

    Each block costs :func:`minattn.cost.windowed_attention_scores` on its
    stage's grid with the window it really uses there (shrunk to the grid
    where the grid is smaller). Compare with ``cost.attention_scores(N)`` for
    one global layer.
    """
    grid = _grid(grid_shape)
    window = as_size_tuple(window_size, len(grid), "window_size")
    _positive_int(blocks, "blocks", allow_zero=True)
    per_stage = _positive_int(blocks_per_stage, "blocks_per_stage")
    if blocks == 0:
        return 0
    grids = stage_grids(grid, _stage_of(blocks, per_stage) + 1)
    total = 0
    for block in range(1, blocks + 1):
        stage = _stage_of(block, per_stage)
        shift = swin_shifts(window, per_stage, shifted)[block - 1 - stage * per_stage]
        total += cost.windowed_attention_scores(grids[stage], WindowLayout(grids[stage], window, shift).window)
    return total
