"""Explorer 5: how far information travels through stacked window layers.

Pick a token and a number of layers: the left panel shows which tokens have
influenced it when the layers alternate regular and shifted windows (a Swin
stage), the middle one when every layer uses the same regular windows. Colour
says at which depth each token first reached the picked one. The right panel
plots the covered fraction of the grid against depth for both.

The fields are computed by :mod:`minattn.receptive_field`, which propagates
a boolean "has influenced" set through the real shifted-window masks layer by
layer; nothing is drawn by hand. Without shifting the field never leaves the
token's window; with shifting it grows by about half a window per layer on
each side, until it covers the grid.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection

from ..receptive_field import layers_to_cover, receptive_field_growth
from ._base import Explorer, ExplorerError
from .controls import GRID_ROWS, follow_grid, grid_sliders, grid_values, int_slider
from .registry import register

__all__ = ["MAX_LAYERS", "ReceptiveFieldExplorer", "receptive_field_explorer"]

MAX_LAYERS = 16


def _first_reached(fields: list[torch.Tensor]) -> np.ndarray:
    """Depth at which each token first joined the field (NaN if never within the list)."""
    first = np.full(tuple(fields[0].shape), np.nan)
    for depth, field in enumerate(fields):
        first[np.isnan(first) & field.numpy()] = depth
    return first


def _cover(fields: list[torch.Tensor], grid, window, token, shifted: bool):
    """Layers to cover the grid: read off the fields when they get there, else ask :func:`layers_to_cover`."""
    for depth, field in enumerate(fields):
        if bool(field.all()):
            return depth
    return layers_to_cover(grid, window, token, shifted=shifted)


def _window_lines(rows: int, cols: int, wh: int, ww: int) -> list:
    lines = [[(x, 0), (x, rows)] for x in range(0, cols + 1, ww)] + [
        [(0, y), (cols, y)] for y in range(0, rows + 1, wh)
    ]
    return lines + [[(cols, 0), (cols, rows)], [(0, rows), (cols, rows)]]


class ReceptiveFieldExplorer(Explorer):
    title = "Receptive field through stacked window-attention layers"
    description = (
        "Three panels: a slice of the grid coloured by the layer at which each token first influences the starred "
        "token, with alternating shifted windows and with regular windows only; then the fraction of the grid "
        "that has influenced it against the number of layers, for both schedules, the chosen depth dashed."
    )

    def __init__(self, grid=(4, 16, 16), window=(2, 4, 4), token=(1, 7, 9), layers: int = 3):
        controls = {
            "layers": int_slider("layers", layers, 0, MAX_LAYERS),
            **grid_sliders(grid, window, token, max_grid=(16, 32, 32)),
        }
        grid_row, window_row, token_row = GRID_ROWS
        self._key = None
        super().__init__(controls, [["layers", *grid_row], window_row, token_row], figsize=(12, 4.0))

    def follow(self, name: str, value) -> None:
        follow_grid(self.controls, name, value)

    def build(self, figure) -> None:
        self.ax_shift, self.ax_plain, self.ax_curve = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
        figure.subplots_adjust(left=0.01, right=0.98, bottom=0.14, top=0.86, wspace=0.12)
        cmap = colormaps["viridis_r"].with_extremes(bad="#f2f2f2")
        self.images, self.lines, self.stars, self.titles = {}, {}, {}, {}
        for key, ax in (("shifted", self.ax_shift), ("regular", self.ax_plain)):
            ax.set_axis_off()
            self.images[key] = self.dynamic(
                ax.imshow(np.zeros((2, 2)), cmap=cmap, vmin=0, vmax=MAX_LAYERS, interpolation="nearest")
            )
            self.lines[key] = self.dynamic(
                ax.add_collection(LineCollection([], colors="black", linewidths=0.9, alpha=0.6))
            )
            self.stars[key] = self.dynamic(
                ax.scatter([], [], s=140, c="gold", marker="*", edgecolors="black", linewidths=0.8)
            )
            self.titles[key] = self.label(ax, fontsize=9.5)
        ax = self.ax_curve
        ax.set_xlim(-0.3, MAX_LAYERS + 0.3)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("layers (odd: regular windows, even: shifted)", fontsize=9)
        ax.set_ylabel("fraction of the grid that has influenced the token", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        (self.curve_shift,) = ax.plot([], [], "-o", ms=3, color="tab:blue", label="shifted windows (Swin)")
        (self.curve_plain,) = ax.plot([], [], "-o", ms=3, color="tab:red", label="regular windows only")
        self.depth_line = ax.axvline(0, color="black", lw=1, ls="--")
        self.dynamic(self.curve_shift, self.curve_plain, self.depth_line)
        ax.legend(fontsize=8, loc="center right")
        self.curve_title = self.label(ax, fontsize=9.5)

    def _fields(self):
        grid, window, token = grid_values(self.controls)
        too_big = [name for name, g, w in zip("DHW", grid, window) if w > g]
        if too_big:
            raise ExplorerError(
                f"the window {window} is larger than the token grid {grid} along {', '.join(too_big)}: "
                "choose a window no larger than the grid"
            )
        key = (grid, window, token)
        if key != self._key:
            shifted = receptive_field_growth(grid, window, token, MAX_LAYERS, shifted=True)
            regular = receptive_field_growth(grid, window, token, MAX_LAYERS, shifted=False)
            self._cache = {
                "shifted": shifted,
                "regular": regular,
                "first_shifted": _first_reached(shifted),
                "first_regular": _first_reached(regular),
                "cover_shifted": _cover(shifted, grid, window, token, True),
                "cover_regular": _cover(regular, grid, window, token, False),
            }
            self._key = key
        return grid, window, token, self._cache

    def update(self) -> None:
        grid, window, token, fields = self._fields()
        depth = self.value("layers")
        d = token[0]
        rows, cols = grid[1], grid[2]
        total = float(np.prod(grid))
        counts = {}
        for key, ax in (("shifted", self.ax_shift), ("regular", self.ax_plain)):
            first = fields[f"first_{key}"][d].copy()
            first[first > depth] = np.nan
            self.images[key].set_data(np.ma.masked_invalid(first))
            self.images[key].set_extent((0, cols, rows, 0))
            ax.set_xlim(0, cols)
            ax.set_ylim(rows, 0)
            self.lines[key].set_segments(_window_lines(rows, cols, window[1], window[2]))
            self.stars[key].set_offsets([[token[2] + 0.5, token[1] + 0.5]])
            counts[key] = int(fields[key][depth].sum())
            cover = fields[f"cover_{key}"]
            self.images[key].set_clim(0, max(depth, 1))
            self.titles[key].set_text(
                f"{'regular / shifted, alternating' if key == 'shifted' else 'regular windows only'}, "
                f"{depth} layer{'s' if depth != 1 else ''}: {counts[key]} / {int(total)}\n"
                + (f"whole grid after {cover} layers" if cover is not None else "never the whole grid")
                + f"; slice d = {d}"
            )
        xs = np.arange(MAX_LAYERS + 1)
        self.curve_shift.set_data(xs, [float(f.sum()) / total for f in fields["shifted"]])
        self.curve_plain.set_data(xs, [float(f.sum()) / total for f in fields["regular"]])
        self.depth_line.set_xdata([depth, depth])
        self.curve_title.set_text(f"grid {grid}, window {window}, token {token}")

        self.state.update(
            grid=grid,
            window=window,
            token=token,
            layers=depth,
            field_shifted=fields["shifted"][depth],
            field_regular=fields["regular"][depth],
            count_shifted=counts["shifted"],
            count_regular=counts["regular"],
            layers_to_cover_shifted=fields["cover_shifted"],
            layers_to_cover_regular=fields["cover_regular"],
        )
        text = (
            f"after {depth} layers token {token} has been influenced by {counts['shifted']} tokens with shifting "
            f"and {counts['regular']} without; colour = the layer at which a token first reached it "
            "(computed by propagating through the real masks, minattn.receptive_field)."
        )
        self.show_info(text)


@register(ReceptiveFieldExplorer)
def receptive_field_explorer(
    grid=(4, 16, 16), window=(2, 4, 4), token=(1, 7, 9), layers: int = 3
) -> ReceptiveFieldExplorer:
    """Which tokens have influenced a picked token after N layers, with and without shifted windows."""
    return ReceptiveFieldExplorer(grid, window, token, layers)
