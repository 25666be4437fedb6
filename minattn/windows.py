"""Windows and shifted windows on a channels-last grid ``(B, D, H, W, C)``.

Window attention cuts the token grid into non-overlapping windows and attends
only inside each. The Swin trick is to alternate that grid with one displaced
by half a window, done as a cyclic roll of the tokens so that the number of
windows stays the same; a mask then stops tokens that were wrapped around from
the far side from attending to their new, unrelated neighbours.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ._validate import as_size_tuple, ceil_div, check_divisible, check_int, check_spatial_rank, spatial_ndim

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


def swin_shifts(window_size, depth: int, shifted: bool = True) -> list[tuple[int, ...]]:
    """Nominal shift of each block of a Swin stage, block 0 first.

    Even blocks (0, 2, ...) use regular windows, odd ones windows displaced
    by half a window; ``shifted=False`` gives regular windows throughout.

    Args:
        window_size: an int (3D) or one int per spatial axis.
        depth: number of blocks, >= 0.

    Returns:
        ``depth`` tuples of ints, e.g. ``[(0, 0, 0), (3, 3, 3), (0, 0, 0)]`` for a 7^3 window.
    """
    window = as_size_tuple(window_size, spatial_ndim(window_size), "window_size")
    depth = check_int(depth, "depth", minimum=0)
    half = tuple(w // 2 for w in window)
    regular = (0,) * len(window)
    return [half if shifted and block % 2 == 1 else regular for block in range(depth)]


@dataclass(frozen=True, init=False)
class WindowLayout:
    """Where every token of a grid goes in one (shifted) window attention layer.

    The layer pads the grid at the end of each axis to whole windows, rolls it
    by ``-shift`` (only when it shifts), cuts it into windows, attends inside
    each window under :meth:`mask`, then undoes each step. This class is that
    geometry, written once: the Swin block, the receptive-field tools, the
    attention-map tools and the explorers all go through it, so they cannot
    disagree.

    ``WindowLayout(grid, window, shift)`` takes the nominal window and shift;
    along an axis where the grid is no larger than the window, one window
    covers the axis, so the window shrinks to the grid and the shift becomes 0
    (Swin's and MONAI's rule, :func:`effective_window_and_shift`).

    Attributes:
        grid: the token grid ``(D, H, W)`` or ``(H, W)``, unpadded.
        window: the effective window, one int per axis.
        shift: the effective shift, one int per axis (all 0: regular windows).
    """

    grid: tuple[int, ...]
    window: tuple[int, ...]
    shift: tuple[int, ...]

    def __init__(self, grid: Sequence[int], window, shift=0):
        grid = tuple(grid.tolist() if hasattr(grid, "tolist") else grid)
        if len(grid) not in (2, 3):
            raise ValueError(f"grid must be (D, H, W) or (H, W), without batch or channels; received {grid}")
        grid = as_size_tuple(grid, len(grid), "grid")
        window, shift = effective_window_and_shift(grid, window, shift)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "shift", shift)

    @property
    def padded(self) -> tuple[int, ...]:
        """The grid padded at the end of each axis to a whole number of windows."""
        return tuple(ceil_div(g, w) * w for g, w in zip(self.grid, self.window))

    @property
    def shifted(self) -> bool:
        """Whether the layer rolls the grid (and so needs a mask)."""
        return any(self.shift)

    @property
    def num_windows(self) -> int:
        """Windows per volume, ``nW``."""
        return math.prod(p // w for p, w in zip(self.padded, self.window))

    @property
    def tokens_per_window(self) -> int:
        """Tokens per window, ``N = Wd * Wh * Ww``."""
        return math.prod(self.window)

    def check_grid(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``x`` is channels-last on this layout's grid."""
        ndim = check_spatial_rank(x, "x", "channels_last")
        if tuple(x.shape[1:-1]) != self.grid:
            axes = "(B, D, H, W, C)" if len(self.grid) == 3 else "(B, H, W, C)"
            raise ValueError(
                f"x must be channels-last {axes} on the layout's grid {self.grid}; "
                f"received shape {tuple(x.shape)} ({ndim} spatial axes)"
            )

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, roll and cut a grid into windows.

        Args:
            x: ``(B, *grid, C)``, channels-last.

        Returns:
            ``(B * nW, N, C)``, windows batch-major in :func:`window_partition` order.
        """
        self.check_grid(x)
        # Pad first, then roll: rolling the unpadded grid would wrap real tokens
        # into the padding and break the three-region geometry the mask assumes.
        x = pad_to_windows(x, self.window)
        if self.shifted:
            x = cyclic_shift(x, self.shift)
        return window_partition(x, self.window)

    def reverse(self, windows: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`partition`: reassemble the windows, roll back and crop the padding.

        Args:
            windows: ``(B * nW, N, C)``.

        Returns:
            ``(B, *grid, C)``.
        """
        x = window_reverse(windows, self.window, self.padded)
        if self.shifted:
            x = cyclic_shift(x, tuple(-s for s in self.shift))
        return x[(slice(None),) + tuple(slice(0, g) for g in self.grid)]

    def mask(self, device=None) -> torch.Tensor | None:
        """Boolean ``(nW, N, N)``, True where two tokens of a window may attend; None for regular windows.

        Built once per layout and device (it depends on geometry only, never
        on the data); treat it as read-only.
        """
        return _cached_mask(self, torch.device(device) if device is not None else torch.device("cpu"))

    def region_ids(self, device=None) -> torch.Tensor:
        """Region label of each position of the padded, rolled grid (:func:`region_ids`); long, ``padded``."""
        return region_ids(self.padded, self.window, self.shift, device=device)

    def token_ids(self, device=None) -> torch.Tensor:
        """Which token sits in each slot of each window.

        Returns:
            long ``(nW, N)``: entry ``[w, i]`` is the flat row-major index, on
            the *padded* grid, of the token in slot ``i`` of window ``w``.
        """
        ids = torch.arange(math.prod(self.padded), device=device).reshape(1, *self.padded, 1)
        if self.shifted:
            ids = cyclic_shift(ids, self.shift)  # position p of the rolled grid holds token ids[p]
        return window_partition(ids, self.window)[..., 0]

    def real(self, device=None) -> torch.Tensor:
        """Bool, ``padded``-shaped: True on the grid's own tokens, False on padding."""
        real = torch.zeros(self.padded, dtype=torch.bool, device=device)
        real[tuple(slice(0, g) for g in self.grid)] = True
        return real


@functools.lru_cache(maxsize=64)
def _cached_mask(layout: WindowLayout, device: torch.device) -> torch.Tensor | None:
    if not layout.shifted:
        return None  # regular windows never mix regions
    return shifted_window_mask(layout.padded, layout.window, layout.shift, device=device)
