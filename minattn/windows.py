"""Windows and shifted windows on a channels-last grid ``(B, D, H, W, C)``.

Window attention cuts the token grid into non-overlapping windows and attends
only inside each. The Swin trick is to alternate that grid with one displaced
by half a window, done as a cyclic roll of the tokens so that the number of
windows stays the same; a mask then stops tokens that were wrapped around from
the far side from attending to their new, unrelated neighbours.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ._validate import as_size_tuple, check_divisible, check_spatial_rank

# Windows are numbered batch-major, then D slowest and W fastest; tokens inside
# a window are row-major (d, h, w): the order of Swin, Video-Swin and MONAI.
_PARTITION = {
    3: "b (d wd) (h wh) (w ww) c -> (b d h w) (wd wh ww) c",
    2: "b (h wh) (w ww) c -> (b h w) (wh ww) c",
}
_REVERSE = {
    3: "(b d h w) (wd wh ww) c -> b (d wd) (h wh) (w ww) c",
    2: "(b h w) (wh ww) c -> b (h wh) (w ww) c",
}
_GRID = {3: ("d", "h", "w"), 2: ("h", "w")}
_WINDOW = {3: ("wd", "wh", "ww"), 2: ("wh", "ww")}


def window_partition(x: torch.Tensor, window_size) -> torch.Tensor:
    """Cut a channels-last grid into windows.

    Args:
        x: ``(B, D, H, W, C)`` (or ``(B, H, W, C)``); each spatial extent must
            be a multiple of the window (pad first, see :func:`pad_to_windows`).
        window_size: an int or ``(Wd, Wh, Ww)``.

    Returns:
        ``(B * nW, Wd * Wh * Ww, C)`` with ``nW = (D/Wd)(H/Wh)(W/Ww)``.
    """
    ndim = check_spatial_rank(x, "x", "channels_last")
    window = as_size_tuple(window_size, ndim, "window_size")
    check_divisible(x.shape[1:-1], window, "window size", "pad the grid to a multiple of the window first")
    return rearrange(x, _PARTITION[ndim], **dict(zip(_WINDOW[ndim], window)))


def window_reverse(windows: torch.Tensor, window_size, spatial_shape) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: ``(B * nW, Wd * Wh * Ww, C)``.
        window_size: the window used to partition.
        spatial_shape: ``(D, H, W)`` of the grid, without the batch axis.

    Returns:
        ``(B, D, H, W, C)``.
    """
    spatial = tuple(spatial_shape)
    ndim = len(spatial)
    if ndim not in (2, 3):
        raise ValueError(f"spatial_shape must be (D, H, W) or (H, W), without batch; received {spatial}")
    spatial = as_size_tuple(spatial, ndim, "spatial_shape")
    window = as_size_tuple(window_size, ndim, "window_size")
    check_divisible(spatial, window, "window size")
    if not isinstance(windows, torch.Tensor) or windows.ndim != 3:
        raise ValueError(f"windows must have shape (B * nW, tokens per window, C); received {getattr(windows, 'shape', windows)}")
    if windows.shape[1] != math.prod(window):
        raise ValueError(f"window {window} holds {math.prod(window)} tokens but windows has {windows.shape[1]} (dim 1)")
    num_windows = math.prod(s // w for s, w in zip(spatial, window))
    if windows.shape[0] % num_windows:
        raise ValueError(
            f"a grid {spatial} in windows {window} has {num_windows} windows per volume, "
            f"which does not divide the {windows.shape[0]} windows received (dim 0)"
        )
    grid = dict(zip(_GRID[ndim], (s // w for s, w in zip(spatial, window))))
    return rearrange(windows, _REVERSE[ndim], **grid, **dict(zip(_WINDOW[ndim], window)))


def cyclic_shift(x: torch.Tensor, shift) -> torch.Tensor:
    """Roll a channels-last grid by ``-shift`` along each spatial axis.

    Token ``(d, h, w)`` moves to ``(d - sd, h - sh, w - sw)`` modulo the grid,
    which displaces the window grid by ``+shift``. ``cyclic_shift(x, -s)``
    undoes ``cyclic_shift(x, s)``.

    Args:
        x: ``(B, D, H, W, C)`` (or ``(B, H, W, C)``).
        shift: an int or one int per spatial axis (negative to undo).

    Returns:
        A rolled copy of ``x``, same shape.
    """
    ndim = check_spatial_rank(x, "x", "channels_last")
    shifts = _as_signed_tuple(shift, ndim)
    return torch.roll(x, shifts=tuple(-s for s in shifts), dims=tuple(range(1, ndim + 1)))


def _as_signed_tuple(shift, ndim: int) -> tuple[int, ...]:
    if hasattr(shift, "tolist") and not isinstance(shift, numbers.Integral):
        shift = shift.tolist()
    if isinstance(shift, numbers.Integral) and not isinstance(shift, bool):
        return (int(shift),) * ndim
    values = tuple(shift)
    if len(values) != ndim or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in values):
        raise ValueError(f"shift must be an int or {ndim} ints, one per spatial axis; received {shift!r}")
    return tuple(int(s) for s in values)


def effective_window_and_shift(spatial_shape: Sequence[int], window_size, shift_size):
    """Window and shift actually used on a grid of ``spatial_shape``.

    Where the grid is no larger than the window along an axis, one window
    covers that axis: its window shrinks to the grid and its shift becomes 0
    (there is nothing to shift across). This is Swin's and MONAI's rule.

    Returns:
        ``(window, shift)``, two tuples of ints.
    """
    ndim = len(spatial_shape)
    window = as_size_tuple(window_size, ndim, "window_size")
    shift = as_size_tuple(shift_size, ndim, "shift_size", allow_zero=True)
    check_shift(window, shift)
    use_window = tuple(s if s <= w else w for s, w in zip(spatial_shape, window))
    use_shift = tuple(0 if s <= w else sh for s, w, sh in zip(spatial_shape, window, shift))
    return use_window, use_shift


def check_shift(window: Sequence[int], shift: Sequence[int]) -> None:
    """A shift must be smaller than its window along every axis."""
    if any(s >= w for s, w in zip(shift, window)):
        raise ValueError(f"shift {tuple(shift)} must be smaller than the window {tuple(window)} along every axis")


def pad_to_windows(x: torch.Tensor, window_size) -> torch.Tensor:
    """Zero-pad the end of each spatial axis of ``(B, D, H, W, C)`` to a multiple of the window."""
    ndim = check_spatial_rank(x, "x", "channels_last")
    window = as_size_tuple(window_size, ndim, "window_size")
    pads = [(-s) % w for s, w in zip(x.shape[1:-1], window)]
    if not any(pads):
        return x
    # F.pad lists pairs from the last axis backwards: channels (none), then W, H, D.
    widths = [0, 0]
    for p in reversed(pads):
        widths += [0, p]
    return F.pad(x, widths)


def region_ids(spatial_shape: Sequence[int], window_size, shift, device=None) -> torch.Tensor:
    """Label each token of a shifted grid with the region it came from.

    After rolling by ``-shift``, each axis of length L holds three regions,
    ``[0, L-W)``, ``[L-W, L-s)`` and ``[L-s, L)``: tokens that were already
    neighbours, and the two strips that the roll brought in from the far side.
    With ``s = 0`` the axis is one region.

    Returns:
        A long tensor of ``spatial_shape``; tokens share a label iff they share
        a region along every axis.
    """
    ndim = len(spatial_shape)
    window = as_size_tuple(window_size, ndim, "window_size")
    shifts = as_size_tuple(shift, ndim, "shift", allow_zero=True)
    check_shift(window, shifts)
    labels = torch.zeros(tuple(spatial_shape), dtype=torch.long, device=device)
    for axis, (length, w, s) in enumerate(zip(spatial_shape, window, shifts)):
        coord = torch.arange(length, device=device)
        # 0, 1 or 2 for the three regions; written without slices so s = 0 needs no special case.
        axis_region = (coord >= length - w).long() + (coord >= length - s).long() if s else torch.zeros_like(coord)
        view = [1] * ndim
        view[axis] = length
        labels = labels * 3 + axis_region.view(view)
    return labels


def shifted_window_mask(spatial_shape, window_size, shift, device=None) -> torch.Tensor:
    """Boolean attention mask for shifted windows.

    Args:
        spatial_shape: the (padded) grid ``(D, H, W)``, a multiple of the window.
        window_size: an int or ``(Wd, Wh, Ww)``.
        shift: an int or ``(sd, sh, sw)``, each smaller than the window.
        device: where to build the mask.

    Returns:
        ``(nW, N, N)`` with ``N = Wd * Wh * Ww``; True where two tokens of a
        shifted window came from the same region and may attend to each other.
    """
    spatial = tuple(spatial_shape)
    ndim = len(spatial)
    if ndim not in (2, 3):
        raise ValueError(f"spatial_shape must be (D, H, W) or (H, W); received {spatial}")
    spatial = as_size_tuple(spatial, ndim, "spatial_shape")
    window = as_size_tuple(window_size, ndim, "window_size")
    check_divisible(spatial, window, "window size", "build the mask on the padded grid")
    labels = region_ids(spatial, window, shift, device=device)
    label_windows = window_partition(labels[None, ..., None], window)[..., 0]  # (nW, N)
    return label_windows[:, :, None] == label_windows[:, None, :]
