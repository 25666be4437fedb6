"""How far information travels through a stack of (shifted) window attention layers.

One attention layer lets a token take in the tokens its mask allows: the
tokens of its window, and after a cyclic shift only those of its window that
came from the same region. Stack layers and the sets compose. This module
propagates a boolean "has influenced" set through the real masks, layer by
layer, exactly as a Swin stage orders them: layer 1 regular windows, layer 2
windows shifted by ``window // 2``, layer 3 regular again, and so on.

Each layer goes through the same :class:`minattn.windows.WindowLayout` as
:func:`minattn.swin.shifted_window_attention`, applied to indicator features
instead of data: pad the grid to whole windows, roll by ``-shift``, partition
into windows, combine with the layout's mask, then undo each step. MLPs and
norms act on one token at a time and residual connections keep a token's own
information, so attention alone decides who can reach whom.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ._validate import as_size_tuple, check_int
from .windows import WindowLayout, swin_shifts

__all__ = ["default_max_layers", "layers_to_cover", "propagate", "receptive_field", "receptive_field_growth"]


def _geometry(grid_shape, window_size):
    grid = tuple(grid_shape)
    if len(grid) not in (2, 3):
        raise ValueError(f"grid_shape must be (D, H, W) or (H, W); received {grid}")
    grid = as_size_tuple(grid, len(grid), "grid_shape")
    window = as_size_tuple(window_size, len(grid), "window_size")
    return grid, window


def default_max_layers(grid: Sequence[int]) -> int:
    """How many layers to try before giving up on linking tokens of ``grid``: ``4 * sum(grid) + 4``.

    A shifted pair of layers moves a field's edge by at least one token per
    axis whenever it can still grow, so this is a generous bound.
    """
    return 4 * sum(grid) + 4


def _regular_and_shifted(grid: tuple[int, ...], window: tuple[int, ...], shifted: bool, device=None):
    """The two layers a Swin stage alternates (the same regular one twice when ``shifted`` is False)."""
    regular_shift, half_shift = swin_shifts(window, 2, shifted)
    regular = _Layer(WindowLayout(grid, window, regular_shift), device)
    return regular, _Layer(WindowLayout(grid, window, half_shift), device) if shifted else regular


class _Layer:
    """One attention layer's window layout, with its mask as a float matrix for propagating sets."""

    def __init__(self, layout: WindowLayout, device=None):
        self.layout = layout
        # (nW, N, N), True where query i may attend to key j; transposed (see step) and float for a matmul.
        mask = layout.mask(device)
        if mask is None:
            mask = torch.ones(layout.num_windows, layout.tokens_per_window, layout.tokens_per_window, device=device)
        self.mask_t = mask.transpose(1, 2).float().contiguous()

    def step(self, reach: torch.Tensor) -> torch.Tensor:
        """One layer, backwards: the tokens whose information reaches a token of ``reach``.

        ``reach`` is a float 0/1 grid ``(1, *grid, C)`` holding C independent
        sets; the result has the same shape. Padding carries no information: zeros.
        """
        windows = self.layout.partition(reach)  # (nW, N, C)
        # key j has influenced query i if mask[i, j]; going backwards from the queries in the set,
        # key j joins if some query i in the set may attend to it: mask^T @ set.
        if windows.shape[-1] == 1:
            # A batched matrix-vector product takes a slow path on CPU (~200x slower); give it two columns.
            windows = (self.mask_t @ torch.cat([windows, windows], dim=-1))[..., :1]
        else:
            windows = self.mask_t @ windows
        return self.layout.reverse(windows.clamp_(max=1.0))


def propagate(reach: torch.Tensor, window_size, shifts: Sequence) -> torch.Tensor:
    """Apply attention layers backwards to boolean sets of tokens.

    Args:
        reach: bool ``(*grid, C)``: C sets of tokens on a grid ``(D, H, W)`` or ``(H, W)``.
        window_size: an int or one int per axis.
        shifts: one nominal shift per layer (int or per-axis ints), in the
            order they are applied; ``effective_window_and_shift`` adapts each
            to the grid as Swin does.

    Returns:
        bool ``(*grid, C)``: for each set, the tokens that reach a member of
        it through the given layers.
    """
    grid, window = _geometry(reach.shape[:-1], window_size)
    x = reach[None].float()
    layers: dict = {}
    for shift in shifts:
        layout = WindowLayout(grid, window, shift)
        if layout not in layers:
            layers[layout] = _Layer(layout, device=reach.device)
        x = layers[layout].step(x)
    return x[0] > 0


def _token_set(grid: tuple[int, ...], token: Sequence[int], device=None) -> torch.Tensor:
    token = tuple(int(t) for t in token)
    if len(token) != len(grid) or any(not 0 <= t < g for t, g in zip(token, grid)):
        raise ValueError(f"token must be {len(grid)} coordinates inside the grid {grid}; received {token}")
    reach = torch.zeros(grid, dtype=torch.bool, device=device)
    reach[token] = True
    return reach


def receptive_field(grid_shape, window_size, token, layers: int, shifted: bool = True, device=None) -> torch.Tensor:
    """Tokens whose information has reached ``token`` after ``layers`` attention layers.

    Layers alternate as in a Swin stage: layer 1 regular windows, layer 2
    shifted by ``window // 2``, ... (``shifted=False``: every layer regular).
    The field after ``L`` layers is computed backwards from the token: layer
    ``L``'s mask first, then ``L - 1``, down to layer 1.

    Args:
        grid_shape: token grid ``(D, H, W)`` or ``(H, W)``; need not be a
            multiple of the window (it is padded as Swin pads it).
        window_size: an int or one int per axis.
        token: the token's grid coordinates.
        layers: number of layers, >= 0 (0 gives just the token).
        shifted: alternate regular and shifted windows (True) or never shift.

    Returns:
        bool tensor of ``grid_shape``, True for every token that has influenced ``token``.
    """
    grid, window = _geometry(grid_shape, window_size)
    layers = check_int(layers, "layers", minimum=0)
    reach = _token_set(grid, token, device)[..., None]
    # backwards from the token: layer L's shift first, down to layer 1's
    return propagate(reach, window, swin_shifts(window, layers, shifted)[::-1])[..., 0]


def receptive_field_growth(grid_shape, window_size, token, max_layers: int, shifted: bool = True, device=None):
    """:func:`receptive_field` for every depth ``0 .. max_layers``, in linear time.

    The field after ``L`` layers applies layers ``L, L-1, ..., 1``; that
    sequence starts with a regular layer when ``L`` is odd and with a shifted
    one when ``L`` is even, then alternates. So two chains, one starting
    regular and one starting shifted, each advanced one layer at a time,
    give every depth without recomputing from scratch.

    Returns:
        A list of ``max_layers + 1`` bool tensors of ``grid_shape``; entry
        ``L`` equals ``receptive_field(grid_shape, window_size, token, L, shifted)``.
    """
    grid, window = _geometry(grid_shape, window_size)
    max_layers = check_int(max_layers, "max_layers", minimum=0)
    start = _token_set(grid, token, device)
    regular, shifted_layer = _regular_and_shifted(grid, window, shifted, device)
    # chain 0 applies regular, shifted, regular, ...; chain 1 shifted, regular, shifted, ...
    chains = [start[None, ..., None].float(), start[None, ..., None].float()]
    fields = [start]
    for depth in range(1, max_layers + 1):
        first_regular = depth % 2 == 1
        chains[0] = (regular if first_regular else shifted_layer).step(chains[0])
        chains[1] = (shifted_layer if first_regular else regular).step(chains[1])
        # L odd: layer L is regular, so the sequence L..1 is the chain that started regular.
        fields.append((chains[0] if depth % 2 == 1 else chains[1])[0, ..., 0] > 0)
    return fields


def layers_to_cover(grid_shape, window_size, token=None, shifted: bool = True, max_layers: int | None = None):
    """Fewest layers after which ``token`` has been influenced by the whole grid.

    Args:
        grid_shape: token grid ``(D, H, W)`` or ``(H, W)``.
        window_size: an int or one int per axis.
        token: grid coordinates; None takes the worst token of the grid
            (every token's field is tracked at once, one set per token, so
            keep the grid to a few thousand tokens).
        shifted: alternate regular and shifted windows (True) or never shift.
        max_layers: give up after this many; default :func:`default_max_layers`.

    Returns:
        The number of layers, or None when the field stops growing (or
        ``max_layers`` is reached) without covering the grid, as happens
        without shifting whenever the window is smaller than the grid.
    """
    grid, window = _geometry(grid_shape, window_size)
    if max_layers is None:
        max_layers = default_max_layers(grid)
    if token is None:
        n = math.prod(grid)
        start = torch.eye(n, dtype=torch.bool).reshape(*grid, n)
    else:
        start = _token_set(grid, token)[..., None]
    if bool(start.all()):
        return 0
    regular, shifted_layer = _regular_and_shifted(grid, window, shifted)
    chains = [start[None].float(), start[None].float()]
    previous, unchanged = None, 0
    for depth in range(1, max_layers + 1):
        first_regular = depth % 2 == 1
        chains[0] = (regular if first_regular else shifted_layer).step(chains[0])
        chains[1] = (shifted_layer if first_regular else regular).step(chains[1])
        field = (chains[0] if first_regular else chains[1]) > 0
        if bool(field.all()):
            return depth
        count = int(field.sum())
        unchanged = unchanged + 1 if count == previous else 0
        if unchanged >= 2:
            return None
        previous = count
    return None
