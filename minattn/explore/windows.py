"""Explorer 4: windows, the cyclic shift, its regions and its mask.

A slice of a 3D token grid with its windows drawn. Turn the shift on and the
window grid moves by half a window; the tokens are coloured by the region the
roll brought them from (:func:`minattn.windows.region_ids`). Pick a token to
see exactly which tokens it may attend to. Nothing here is drawn by hand: the
allowed set is the token's row of the real :func:`shifted_window_mask`, found
by running token ids through :func:`cyclic_shift` and :func:`window_partition`
and mapped back to grid positions.

Panels: the grid as the learner knows it (original positions); the same slice
after the roll, which is what ``window_partition`` cuts into a regular window
grid; the ``(N, N)`` mask of the picked token's window with its row marked.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from ..windows import WindowLayout, cyclic_shift, swin_shifts, window_reverse
from ._base import Explorer, ExplorerError
from .controls import GRID_ROWS, follow_grid, grid_sliders, grid_values
from .registry import register

__all__ = ["REGION_COLOURS", "WindowExplorer", "window_explorer", "window_geometry"]

# 27 = 3^3 possible regions in 3D; pastel, so markers stay readable on top.
REGION_COLOURS = ListedColormap(
    [
        "#cfe2f3",
        "#f4cccc",
        "#d9ead3",
        "#fff2cc",
        "#d9d2e9",
        "#fce5cd",
        "#d0e0e3",
        "#ead1dc",
        "#e6e6e6",
        "#9fc5e8",
        "#ea9999",
        "#b6d7a8",
        "#ffe599",
        "#b4a7d6",
        "#f9cb9c",
        "#a2c4c9",
        "#d5a6bd",
        "#cccccc",
        "#6fa8dc",
        "#e06666",
        "#93c47d",
        "#ffd966",
        "#8e7cc3",
        "#f6b26b",
        "#76a5af",
        "#c27ba0",
        "#b7b7b7",
    ]
)


def window_geometry(grid, window, shifted: bool) -> dict:
    """Everything the explorer shows about one grid, computed with :mod:`minattn.windows`.

    Args:
        grid: token grid ``(D, H, W)``.
        window: nominal window ``(Wd, Wh, Ww)``, none larger than the grid.
        shifted: shift by ``window // 2`` (a Swin odd block) or not.

    Returns:
        A dict with the effective ``window`` and ``shift``, the ``padded`` grid,
        ``windows`` ``(nW, N)`` (original flat token ids in each window, in
        ``window_partition`` order), ``mask`` ``(nW, N, N)``, ``regions`` and
        ``window_id`` (each ``padded``-shaped, in original positions),
        ``regions_rolled`` (in rolled positions) and ``real`` (False on padding).
    """
    grid = tuple(grid)
    window = tuple(window)
    too_big = [name for name, g, w in zip("DHW", grid, window) if w > g]
    if too_big:
        raise ExplorerError(
            f"the window {window} is larger than the token grid {grid} along {', '.join(too_big)}: "
            "choose a window no larger than the grid (a real Swin block would shrink the window to the grid there)"
        )
    layout = WindowLayout(grid, window, swin_shifts(window, 2, shifted)[1])
    win, shift, padded = layout.window, layout.shift, layout.padded
    windows = layout.token_ids()  # (nW, N) original flat ids on the padded grid
    mask = layout.mask()
    if mask is None:
        mask = torch.ones(layout.num_windows, layout.tokens_per_window, layout.tokens_per_window, dtype=torch.bool)
    regions_rolled = layout.region_ids()
    back = tuple(-s for s in shift)
    regions = cyclic_shift(regions_rolled[None, ..., None], back)[0, ..., 0]
    n_windows, n = windows.shape
    window_index = torch.arange(n_windows)[:, None, None].expand(n_windows, n, 1)
    window_id = cyclic_shift(window_reverse(window_index, win, padded), back)[0, ..., 0]
    real = layout.real()
    return dict(
        grid=grid,
        window=win,
        shift=shift,
        padded=padded,
        windows=windows,
        mask=mask,
        regions=regions,
        regions_rolled=regions_rolled,
        window_id=window_id,
        real=real,
    )


def _borders(ids: np.ndarray) -> list:
    """Line segments between cells of a 2D id map whose ids differ, plus the outer frame."""
    rows, cols = ids.shape
    segments = []
    for h, w in zip(*np.nonzero(ids[:, 1:] != ids[:, :-1])):
        segments.append([(w + 1, h), (w + 1, h + 1)])
    for h, w in zip(*np.nonzero(ids[1:, :] != ids[:-1, :])):
        segments.append([(w, h + 1), (w + 1, h + 1)])
    segments += [[(0, 0), (cols, 0)], [(cols, 0), (cols, rows)], [(cols, rows), (0, rows)], [(0, rows), (0, 0)]]
    return segments


class WindowExplorer(Explorer):
    title = "Windows and shifted windows: who may attend to whom"
    description = (
        "Three panels: a slice of the token grid coloured by region with the windows outlined, the picked token "
        "starred, the tokens it may attend dotted and the masked ones crossed; the same slice after the cyclic "
        "shift, as window_partition cuts it; and the mask of the picked token's window (green = may attend), its "
        "row outlined."
    )

    def __init__(self, grid=(4, 8, 8), window=(2, 4, 4), token=(1, 7, 7), shifted: bool = True):
        controls = {
            **grid_sliders(grid, window, token, max_grid=(16, 24, 24)),
            "shifted": widgets.Checkbox(value=shifted, description="shift by window // 2 (odd Swin block)"),
        }
        grid_row, window_row, token_row = GRID_ROWS
        self._geometry_key = None
        super().__init__(controls, [[*grid_row, "shifted"], window_row, token_row], figsize=(12, 4.2))

    def follow(self, name: str, value) -> None:
        follow_grid(self.controls, name, value)

    def build(self, figure) -> None:
        self.ax_grid, self.ax_rolled, self.ax_mask = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.9]})
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.08)
        self.titles = {}
        for key, ax in (("grid", self.ax_grid), ("rolled", self.ax_rolled), ("mask", self.ax_mask)):
            ax.set_axis_off()
            self.titles[key] = self.label(ax, fontsize=9.5)
        blank = np.zeros((2, 2))
        self.region_image = self.dynamic(
            self.ax_grid.imshow(blank, cmap=REGION_COLOURS, vmin=-0.5, vmax=26.5, interpolation="nearest")
        )
        self.pad_image = self.dynamic(self.ax_grid.imshow(np.zeros((2, 2, 4)), interpolation="nearest"))
        self.borders = self.dynamic(self.ax_grid.add_collection(LineCollection([], colors="black", linewidths=1.6)))
        self.cell_lines = self.dynamic(self.ax_grid.add_collection(LineCollection([], colors="white", linewidths=0.5)))
        self.allowed_dots = self.dynamic(
            self.ax_grid.scatter([], [], s=30, c="#1a7f37", marker="o", label="may attend")
        )
        self.blocked_dots = self.dynamic(
            self.ax_grid.scatter([], [], s=36, c="#c00000", marker="x", label="same window, masked")
        )
        self.token_star = self.dynamic(
            self.ax_grid.scatter([], [], s=140, c="gold", marker="*", edgecolors="black", linewidths=0.8)
        )
        self.ax_grid.legend(
            handles=[self.allowed_dots, self.blocked_dots],
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=2,
            fontsize=8,
            frameon=False,
        )

        self.rolled_image = self.dynamic(
            self.ax_rolled.imshow(blank, cmap=REGION_COLOURS, vmin=-0.5, vmax=26.5, interpolation="nearest")
        )
        self.rolled_borders = self.dynamic(
            self.ax_rolled.add_collection(LineCollection([], colors="black", linewidths=1.6))
        )
        self.rolled_dots = self.dynamic(self.ax_rolled.scatter([], [], s=30, c="#1a7f37", marker="o"))
        self.rolled_blocked = self.dynamic(self.ax_rolled.scatter([], [], s=36, c="#c00000", marker="x"))
        self.rolled_star = self.dynamic(
            self.ax_rolled.scatter([], [], s=140, c="gold", marker="*", edgecolors="black", linewidths=0.8)
        )

        self.mask_image = self.dynamic(
            self.ax_mask.imshow(blank, cmap="Greens", vmin=0, vmax=1.25, interpolation="nearest")
        )
        self.mask_row = self.dynamic(self.ax_mask.add_patch(Rectangle((0, 0), 1, 1, fill=False, ec="gold", lw=2)))

    def _geometry(self):
        grid, window, _ = grid_values(self.controls)
        key = (grid, window, bool(self.value("shifted")))
        if key != self._geometry_key:
            self._geometry_cache = window_geometry(grid, window, key[2])
            self._geometry_key = key
        return self._geometry_cache

    def update(self) -> None:
        geo = self._geometry()
        grid, win, shift, padded = geo["grid"], geo["window"], geo["shift"], geo["padded"]
        _, _, token = grid_values(self.controls)
        token_id = (token[0] * padded[1] + token[1]) * padded[2] + token[2]
        windows, mask = geo["windows"], geo["mask"]
        where = (windows == token_id).nonzero()[0]
        w_index, n_index = int(where[0]), int(where[1])
        row = mask[w_index, n_index]  # (N,): the token's row of its window's mask
        members = windows[w_index]
        allowed = torch.zeros(padded, dtype=torch.bool)
        allowed.view(-1)[members[row]] = True
        in_window = torch.zeros(padded, dtype=torch.bool)
        in_window.view(-1)[members] = True
        blocked = in_window & ~allowed

        d = token[0]
        rows, cols = padded[1], padded[2]
        extent = (0, cols, rows, 0)
        for ax in (self.ax_grid, self.ax_rolled):
            ax.set_xlim(0, cols)
            ax.set_ylim(rows, 0)
        self.region_image.set_data(geo["regions"][d].numpy())
        self.region_image.set_extent(extent)
        pad = np.zeros((rows, cols, 4))
        pad[~geo["real"][d].numpy()] = (0.25, 0.25, 0.25, 0.55)
        self.pad_image.set_data(pad)
        self.pad_image.set_extent(extent)
        self.borders.set_segments(_borders(geo["window_id"][d].numpy()))
        cells = [[(x, 0), (x, rows)] for x in range(1, cols)] + [[(0, y), (cols, y)] for y in range(1, rows)]
        self.cell_lines.set_segments(cells)

        def centres(mask2d: torch.Tensor) -> np.ndarray:
            h, w = np.nonzero(mask2d.numpy())
            return np.column_stack([w + 0.5, h + 0.5]) if len(h) else np.zeros((0, 2))

        others = allowed.clone()
        others[token] = False
        self.allowed_dots.set_offsets(centres(others[d]))
        self.blocked_dots.set_offsets(centres(blocked[d]))
        self.token_star.set_offsets([[token[2] + 0.5, token[1] + 0.5]])

        # The rolled frame: position p holds the token from p + shift.
        rolled = tuple((t - s) % p for t, s, p in zip(token, shift, padded))
        roll = lambda x: cyclic_shift(x[None, ..., None], shift)[0, ..., 0]
        self.rolled_image.set_data(geo["regions_rolled"][rolled[0]].numpy())
        self.rolled_image.set_extent(extent)
        regular = np.arange(rows * cols).reshape(rows, cols)
        regular = (regular // cols // win[1]) * cols + (regular % cols) // win[2]  # window id of a regular grid
        self.rolled_borders.set_segments(_borders(regular))
        others_rolled, blocked_rolled = roll(others), roll(blocked)
        self.rolled_dots.set_offsets(centres(others_rolled[rolled[0]]))
        self.rolled_blocked.set_offsets(centres(blocked_rolled[rolled[0]]))
        self.rolled_star.set_offsets([[rolled[2] + 0.5, rolled[1] + 0.5]])

        n = members.numel()
        self.mask_image.set_data(mask[w_index].numpy().astype(float))
        self.mask_image.set_extent((-0.5, n - 0.5, n - 0.5, -0.5))
        self.ax_mask.set_xlim(-0.5, n - 0.5)
        self.ax_mask.set_ylim(n - 0.5, -0.5)
        self.mask_row.set_bounds(-0.5, n_index - 0.5, n, 1)

        n_allowed = int(row.sum())
        n_pad_allowed = int((allowed & ~geo["real"]).sum())
        self.titles["grid"].set_text(
            f"grid {grid}, slice d = {d} (original positions)\n"
            f"window {win}, shift {shift}: {windows.shape[0]} windows; colour = region"
        )
        self.titles["rolled"].set_text(
            f"after cyclic_shift by -{shift}: slice {rolled[0]}\nwhat window_partition cuts (regular windows)"
        )
        self.titles["mask"].set_text(f"mask of window #{w_index} ({n} x {n})\nrow {n_index} = the picked token")
        allowed_positions = [tuple(int(c) for c in np.unravel_index(int(i), padded)) for i in members[row]]
        self.state.update(
            grid=grid,
            window=win,
            shift=shift,
            padded=padded,
            token=token,
            window_index=w_index,
            position_in_window=n_index,
            window_tokens=[tuple(int(c) for c in np.unravel_index(int(i), padded)) for i in members],
            mask=mask[w_index].numpy(),
            mask_row=row.numpy(),
            allowed=allowed,
            blocked=blocked,
            allowed_positions=allowed_positions,
            regions=geo["regions"],
            num_windows=windows.shape[0],
        )
        text = (
            f"token {token} sits in window #{w_index} (position {n_index} of {n}); it may attend to "
            f"<b>{n_allowed}</b> of the {n} tokens there"
            + (f" ({n - n_allowed} came from the far side of the roll and are masked)" if n_allowed < n else "")
            + (f"; {n_pad_allowed} of them are zero padding" if n_pad_allowed else "")
            + "."
        )
        self.show_info(text)


@register(WindowExplorer)
def window_explorer(grid=(4, 8, 8), window=(2, 4, 4), token=(1, 7, 7), shifted: bool = True) -> WindowExplorer:
    """Windows, shift, regions and the attention mask of a picked token on a 3D token grid.

    Args:
        grid: token grid ``(D, H, W)`` to start with.
        window: window ``(Wd, Wh, Ww)``.
        token: the picked token ``(d, h, w)``.
        shifted: start with the shifted windows.
    """
    return WindowExplorer(grid, window, token, shifted)
