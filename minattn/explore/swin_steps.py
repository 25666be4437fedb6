"""Explorer: one shifted Swin window-attention layer, one step at a time.

The attention sub-layer of a Swin block is a pipeline of bookkeeping steps
around one short attention: pad the grid to whole windows, roll it, cut it into
windows, build the mask, attend, put the windows back, roll back, crop. Step
through it on a small grid whose sides are not multiples of the window, so the
padding shows. At every step the explorer draws one D-slice of the grid with
the number of the token that sits in each cell, the windows or regions as
colours, the picked window outlined, and the shape of the tensor at that step.

Every geometric fact comes from :class:`minattn.windows.WindowLayout`: which
token sits in which slot of which window (``token_ids``), the regions
(``region_ids``), the padding (``real``) and the mask (``mask``); the features
go through ``layout.partition``, a real :class:`minattn.WindowAttention` and
``layout.reverse``, exactly as :func:`minattn.swin.shifted_window_attention`
runs them. All of it is computed once per geometry; a step, a slice or a window
only redraws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from ..window_attention import WindowAttention
from ..windows import WindowLayout, window_partition, window_reverse
from ._base import Explorer
from .attention_maps import outline_segments
from .controls import int_slider
from .registry import register
from .text import NumberLayer
from .windows import REGION_COLOURS, _borders

__all__ = ["STEPS", "SwinStepsExplorer", "WindowAttentionTrace", "swin_steps_explorer", "trace_window_attention"]

STEPS = ("input", "pad", "roll", "partition", "mask", "attend", "reverse", "roll back", "crop")
_ROLLED = {"roll", "partition", "mask", "attend", "reverse"}  # steps whose grid is in rolled positions
_UNPADDED = {"input", "crop"}  # steps whose grid has no padding
_WINDOW_TABLE = {"partition", "reverse"}  # steps whose tensor is a batch of windows, drawn as a table

WINDOW_COLOURS = ListedColormap(
    ["#9fc5e8", "#f9cb9c", "#b6d7a8", "#ea9999", "#b4a7d6", "#ffe599", "#a2c4c9", "#d5a6bd", "#cccccc", "#f6b26b"]
)
_PADDING_GREY = np.array([0.55, 0.55, 0.55])
_COLOUR_MEANING = {
    "input": "the tokens",
    "pad": "· = padding",
    "roll": "colour = region",
    "partition": "colour = window",
    "mask": "colour = region",
    "attend": "colour = region",
    "reverse": "colour = window",
    "roll back": "colour = the window it was in",
    "crop": "colour = the window it was in",
}
_INPUT_BLUE = np.array([0.86, 0.91, 0.96])


@dataclass(frozen=True)
class WindowAttentionTrace:
    """One window-attention layer on one grid, with what every step produced.

    Attributes:
        layout: the geometry.
        attn: the attention module used (random weights, seeded).
        x: ``(1, *grid, C)`` the input features.
        windows: ``(nW, N, C)`` = ``layout.partition(x)``.
        mask: bool ``(nW, N, N)``, True = may attend (all True for regular windows).
        weights: ``(nW, N, N)`` attention weights, averaged over the heads.
        attended: ``(nW, N, C)``, the attention's output per window.
        output: ``(1, *grid, C)`` = ``layout.reverse(attended)``.
        shapes: step name -> shape of the tensor after that step (``None`` for the mask of regular windows).
        token_ids: long ``(nW, N)``: the token (flat index on the padded grid) in each slot, ``layout.token_ids()``.
        token_at: long ``padded``: the token (flat index on the padded grid) at each rolled position.
        window_at: long ``padded``: the window cut at each rolled position.
        window_of: long ``padded``: the window each token of the padded grid (its own position) was attended in.
        regions: long ``padded``: the region of each rolled position, ``layout.region_ids()``.
        slot_region: long ``(nW, N)``: the region of the token in each slot.
        slot_real: bool ``(nW, N)``: False where the slot holds padding.
        grid_number: long ``padded``: the token's number on the unpadded grid, row-major; -1 on padding.
    """

    layout: WindowLayout
    attn: WindowAttention
    x: torch.Tensor
    windows: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    attended: torch.Tensor
    output: torch.Tensor
    shapes: dict
    token_ids: torch.Tensor
    token_at: torch.Tensor
    window_at: torch.Tensor
    window_of: torch.Tensor
    regions: torch.Tensor
    slot_region: torch.Tensor
    slot_real: torch.Tensor
    grid_number: torch.Tensor


@torch.no_grad()
def trace_window_attention(
    grid=(5, 6, 7), window=4, shift=2, channels: int = 8, heads: int = 2, seed: int = 0
) -> WindowAttentionTrace:
    """Run random features through one (shifted) window-attention layer and keep every step.

    Args:
        grid: the token grid ``(D, H, W)``.
        window: nominal window, an int or one per axis.
        shift: nominal shift, an int or one per axis (0: a regular block).
        channels: C of the random features.
        heads: attention heads (C must be divisible by it).
        seed: seeds the features and the attention's weights (the global random state is left alone).

    Returns:
        :class:`WindowAttentionTrace`.
    """
    layout = WindowLayout(grid, window, shift)
    if len(layout.grid) != 3:
        raise ValueError(f"grid must be a 3D token grid (D, H, W); received {tuple(grid)}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *layout.grid, channels, generator=generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attn = WindowAttention(channels, window, heads).eval()
    n_windows, n = layout.num_windows, layout.tokens_per_window
    windows = layout.partition(x)
    mask = layout.mask()
    attn.record_weights = True
    try:
        attended = attn(windows, mask=mask, window_size=layout.window)
        weights = attn.last_weights.mean(1)
    finally:
        attn.record_weights = False
        attn.last_weights = None
    output = layout.reverse(attended)
    if mask is None:
        mask = torch.ones(n_windows, n, n, dtype=torch.bool)

    padded = layout.padded
    token_ids = layout.token_ids()  # (nW, N): which padded-grid token sits in each slot
    slot_window = torch.arange(n_windows)[:, None].expand(n_windows, n)
    # Putting windows back where they were cut gives the rolled grid: what sits where after the roll.
    token_at = window_reverse(token_ids[..., None], layout.window, padded)[0, ..., 0]
    window_at = window_reverse(slot_window[..., None], layout.window, padded)[0, ..., 0]
    window_of = torch.empty(math.prod(padded), dtype=torch.long)
    window_of[token_ids.reshape(-1)] = slot_window.reshape(-1)
    real = layout.real()
    grid_number = torch.full(padded, -1, dtype=torch.long)
    grid_number[real] = torch.arange(math.prod(layout.grid))
    # The region labels live on the rolled grid, so cutting them like the features gives each slot's region.
    regions = layout.region_ids()
    slot_region = window_partition(regions[None, ..., None], layout.window)[..., 0]
    padded_shape = (1, *padded, channels)
    shapes = {
        "input": tuple(x.shape),
        "pad": padded_shape,
        "roll": padded_shape,
        "partition": tuple(windows.shape),
        "mask": tuple(mask.shape) if layout.shifted else None,
        "attend": tuple(attended.shape),
        "reverse": tuple(window_reverse(attended, layout.window, padded).shape),
        "roll back": padded_shape,
        "crop": tuple(output.shape),
    }
    return WindowAttentionTrace(
        layout=layout,
        attn=attn,
        x=x,
        windows=windows,
        mask=mask,
        weights=weights,
        attended=attended,
        output=output,
        shapes=shapes,
        token_ids=token_ids,
        token_at=token_at,
        window_at=window_at,
        window_of=window_of.reshape(padded),
        regions=regions,
        slot_region=slot_region,
        slot_real=real.reshape(-1)[token_ids],
        grid_number=grid_number,
    )


def _shape_text(shape) -> str:
    return "none" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _times(sizes) -> str:
    return " × ".join(str(s) for s in sizes)


def _explain(step: str, trace: WindowAttentionTrace, window: int) -> str:
    """The sentence under the figure: what this step does, with this grid's numbers."""
    layout, shapes = trace.layout, trace.shapes
    grid, padded, win, shift = layout.grid, layout.padded, layout.window, layout.shift
    n_windows, n = layout.num_windows, layout.tokens_per_window
    allowed = int(trace.mask[window].sum())
    regions = int(trace.slot_region[window].unique().numel())
    padding_slots = int((~trace.slot_real[window]).sum())
    if step == "input":
        return (
            f"The normalised input: one volume whose {_times(grid)} tokens carry C = {shapes['input'][-1]} channels, "
            f"channels-last {_shape_text(shapes['input'])}. The numbers are the tokens' row-major indices."
        )
    if step == "pad":
        pads = math.prod(padded) - math.prod(grid)
        return (
            f"Zeros are appended at the end of each axis until it holds whole windows of {_times(win)}: "
            f"{_times(grid)} becomes {_times(padded)}, and {pads} of its {math.prod(padded)} positions are padding (grey)."
        )
    if step == "roll":
        if not layout.shifted:
            return "A regular block does not roll: the grid goes to the partition as it is."
        return (
            f"Roll by −{shift}: each position now holds the token from {shift} further on, and the first "
            f"{shift} rows, columns and slices wrap around to the far end. Colours: the region of each position."
        )
    if step == "partition":
        return (
            f"The rolled grid is cut into {n_windows} windows of {_times(win)} = {n} tokens: "
            f"{_shape_text(shapes['partition'])} = (B·nW, N, C), a batch of short sequences (right: one row per "
            f"window, coloured by region; grey slots hold padding). Window {window} holds {n - padding_slots} real "
            f"tokens and {padding_slots} padding slots."
        )
    if step == "mask":
        if not layout.shifted:
            return "A regular block needs no mask: every window holds one region, so every pair may attend."
        return (
            f"Window {window} holds tokens of {regions} region(s); a token may attend only to tokens of its own "
            f"region: {allowed} of the {n * n} pairs are allowed (green). The mask {_shape_text(shapes['mask'])} "
            "depends on the geometry alone and is built once."
        )
    if step == "attend":
        return (
            f"Multi-head attention inside every window at once: {_shape_text(shapes['attend'])}. The weights of "
            f"window {window} (right, mean of the heads) are exactly 0 wherever the mask forbids a pair. Padding "
            "slots are keys like any other token of their region: Swin does not mask them."
        )
    if step == "reverse":
        return (
            f"Each window goes back where it was cut: {_shape_text(shapes['attend'])} → "
            f"{_shape_text(shapes['reverse'])}, still in rolled positions."
        )
    if step == "roll back":
        return (
            f"Roll by +{shift}: every token returns to its own position. Colours: the window it was attended in; "
            "in a shifted block those windows straddle the regular ones, and the last ones wrap around the edge."
        )
    return (
        f"Crop the padding: {_shape_text(shapes['roll back'])} → {_shape_text(shapes['crop'])}, the input's shape. "
        "The block adds this to its input (the residual), then runs its MLP."
    )


class SwinStepsExplorer(Explorer):
    title = "One shifted Swin window-attention layer, step by step"
    description = (
        "Left: the steps of one Swin layer (pad, roll, partition, mask, attend, reverse, crop) with the tensor "
        "shape after each, the current step highlighted; middle: a slice of the token grid as that step leaves "
        "it, token indices written in and one window outlined; right: the windows table, a window's mask or its "
        "attention weights, as the step requires."
    )

    def __init__(self, grid=(5, 6, 7), window=4, shift=2, step: str = "input", seed: int = 0):
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}; received {step!r}")
        self._settings = (tuple(grid), window, shift, seed)
        self._traces: dict = {}
        padded = self._trace(True).layout.padded
        n_windows = self._trace(True).layout.num_windows
        controls = {
            "step": widgets.SelectionSlider(
                options=STEPS, value=step, description="step", style={"description_width": "initial"}
            ),
            "back": widgets.Button(description="◀ back", layout=widgets.Layout(width="90px")),
            "next": widgets.Button(description="next ▶", layout=widgets.Layout(width="90px")),
            "slice": int_slider("slice d", 0, 0, padded[0] - 1),
            "window": int_slider("window", n_windows - 1, 0, n_windows - 1),
            "shifted": widgets.Checkbox(value=True, description="shifted block (roll + mask)"),
        }
        super().__init__(controls, [["step", "back", "next"], ["slice", "window", "shifted"]], figsize=(13, 4.6))

    def _trace(self, shifted: bool) -> WindowAttentionTrace:
        if shifted not in self._traces:
            grid, window, shift, seed = self._settings
            self._traces[shifted] = trace_window_attention(grid, window, shift if shifted else 0, seed=seed)
        return self._traces[shifted]

    def _on_button(self, name: str) -> None:
        index = STEPS.index(self.value("step")) + (1 if name == "next" else -1)
        self.controls["step"].value = STEPS[min(max(index, 0), len(STEPS) - 1)]

    def build(self, figure) -> None:
        layout = self._trace(True).layout
        rows, cols = layout.padded[1:]
        ax_steps = figure.add_axes((0.005, 0.04, 0.17, 0.8))
        self.ax_grid = figure.add_axes((0.19, 0.06, 0.36, 0.76))
        self.ax_table = figure.add_axes((0.58, 0.06, 0.41, 0.76))
        self.ax_matrix = figure.add_axes((0.58, 0.06, 0.41, 0.76))
        for ax in (ax_steps, self.ax_grid, self.ax_table, self.ax_matrix):
            ax.set_axis_off()
        ax_steps.set_xlim(0, 1)
        ax_steps.set_ylim(len(STEPS), 0)
        self.step_marker = self.dynamic(
            ax_steps.add_patch(Rectangle((0.0, 0.0), 1.0, 1.0, facecolor="#fff2a8", edgecolor="#c9a800"))
        )
        self.step_labels = [
            self.label(ax_steps, 0.03, i + 0.5, "", ha="left", va="center", fontsize=9, coords="data")
            for i in range(len(STEPS))
        ]
        self.label(ax_steps, 0.0, 1.03, "step  →  shape", ha="left", fontsize=9.5)

        self.ax_grid.set_xlim(0, cols)
        self.ax_grid.set_ylim(rows, 0)
        self.ax_grid.set_aspect("equal")
        self.grid_title = self.label(self.ax_grid, fontsize=9.5)
        self.grid_image = self.dynamic(
            self.ax_grid.imshow(np.zeros((rows, cols, 4)), extent=(0, cols, rows, 0), interpolation="nearest")
        )
        self.cell_lines = self.dynamic(
            self.ax_grid.add_collection(
                LineCollection(
                    [[(x, 0), (x, rows)] for x in range(cols + 1)] + [[(0, y), (cols, y)] for y in range(rows + 1)],
                    colors="white",
                    linewidths=0.6,
                )
            )
        )
        self.borders = self.dynamic(self.ax_grid.add_collection(LineCollection([], colors="black", linewidths=1.6)))
        self.picked = self.dynamic(self.ax_grid.add_collection(LineCollection([], colors="#d4a000", linewidths=3.2)))
        self.numbers = NumberLayer(fontsize=7.5)
        self.ax_grid.add_artist(self.numbers)
        self.dynamic(self.numbers)

        n_windows, n = layout.num_windows, layout.tokens_per_window
        self.matrix_title = self.label(self.ax_table, fontsize=9.5)
        self.table_image = self.dynamic(
            self.ax_table.imshow(
                np.zeros((n_windows, n, 4)), extent=(0, n, n_windows, 0), aspect="auto", interpolation="nearest"
            )
        )
        self.table_row = self.dynamic(self.ax_table.add_patch(Rectangle((0, 0), n, 1, fill=False, ec="#d4a000", lw=3)))
        self.table_rows = [
            self.label(self.ax_table, -0.3, i + 0.5, f"w{i}", ha="right", va="center", fontsize=8, coords="data")
            for i in range(n_windows)
        ]
        self.ax_table.set_xlim(0, n)
        self.ax_table.set_ylim(n_windows, 0)
        self.matrix_image = self.dynamic(
            self.ax_matrix.imshow(np.zeros((n, n)), extent=(0, n, n, 0), interpolation="nearest", vmin=0, vmax=1)
        )
        self.ax_matrix.set_xlim(0, n)
        self.ax_matrix.set_ylim(n, 0)
        self.ax_matrix.set_aspect("equal")
        self.no_windows = self.label(self.ax_matrix, 0.5, 0.5, "", va="center", fontsize=10, colour="#555555")

    def update(self) -> None:
        step = self.value("step")
        shifted = bool(self.value("shifted"))
        trace = self._trace(shifted)
        layout = trace.layout
        w = self.value("window")
        d = self.value("slice")
        if step in _UNPADDED and d >= layout.grid[0]:
            self.state["note"] = (
                f"slice d = {d} lies in the padding, which the grid has not got at this step: showing d = "
                f"{layout.grid[0] - 1}"
            )
            d = layout.grid[0] - 1

        # Which token sits in each cell, and what the cell's colour says.
        rolled = step in _ROLLED
        tokens = trace.token_at[d] if rolled else torch.arange(math.prod(layout.padded)).reshape(layout.padded)[d]
        numbers = trace.grid_number.reshape(-1)[tokens].numpy()  # -1 on padding
        rolled_windows = trace.window_at[d].numpy()
        own_windows = trace.window_of[d].numpy()
        if step in ("input", "pad"):
            colours = np.broadcast_to(_INPUT_BLUE, (*numbers.shape, 3)).copy()
            borders = []
        elif step in ("roll", "mask", "attend"):
            colours = REGION_COLOURS(trace.regions[d].numpy())[..., :3]
            borders = _borders(rolled_windows)
        elif rolled:  # partition, reverse
            colours = WINDOW_COLOURS(rolled_windows % WINDOW_COLOURS.N)[..., :3]
            borders = _borders(rolled_windows)
        else:  # roll back, crop
            colours = WINDOW_COLOURS(own_windows % WINDOW_COLOURS.N)[..., :3]
            borders = _borders(own_windows)
        padding = numbers < 0
        rgba = np.ones((*numbers.shape, 4))
        rgba[..., :3] = np.where(padding[..., None], 0.6 * colours + 0.4 * _PADDING_GREY, colours)
        in_window = rolled_windows == w if rolled else own_windows == w
        if step in _UNPADDED:
            rgba[padding] = 0.0  # no such cells at this step
            in_window = in_window & ~padding
            rows, cols = layout.grid[1:]
            borders = [] if step == "input" else _borders(own_windows[:rows, :cols])
        self.grid_image.set_data(rgba)
        self.borders.set_segments(borders)
        self.picked.set_segments(outline_segments(in_window) if step != "input" else [])
        self.numbers.set_items(
            (
                c + 0.5,
                r + 0.5,
                "·" if padding[r, c] else str(int(numbers[r, c])),
                "#555555" if padding[r, c] else "black",
            )
            for r, c in np.ndindex(*numbers.shape)
            if step not in _UNPADDED or not padding[r, c]
        )
        frame = "rolled positions" if rolled else "own positions"
        outlined = f"window {w} outlined" if in_window.any() else f"window {w} is not in this slice"
        self.grid_title.set_text(f"slice d = {d} ({frame}), numbers = token index\n{_COLOUR_MEANING[step]}; {outlined}")

        # The right panel: the batch of windows as a table, or the picked window's mask or weights.
        show_table, show_matrix = step in _WINDOW_TABLE, step in ("mask", "attend")
        self.table_image.set_visible(show_table)
        self.table_row.set_visible(show_table)
        for label in self.table_rows:
            label.set_visible(show_table)
        self.matrix_image.set_visible(show_matrix)
        matrix = None
        if show_table:
            table = REGION_COLOURS(trace.slot_region.numpy())[..., :3]
            table = np.where(trace.slot_real.numpy()[..., None], table, _PADDING_GREY)
            self.table_image.set_data(np.concatenate([table, np.ones((*table.shape[:2], 1))], axis=-1))
            self.table_row.set_y(w)
            matrix = trace.slot_region.numpy()
            self.matrix_title.set_text(
                f"{_shape_text(trace.shapes[step if step == 'partition' else 'attend'])}: one row per window, "
                f"one column per slot\ncolour = region, grey = padding; window {w} outlined"
            )
        elif step == "mask":
            matrix = trace.mask[w].numpy()
            self.matrix_image.set_cmap("Greens")
            self.matrix_image.set_data(matrix.astype(float) * 0.8)
            self.matrix_image.set_clim(0, 1)
            self.matrix_title.set_text(f"mask of window {w}: query slot (row) × key slot (column)\ngreen = may attend")
        elif step == "attend":
            matrix = trace.weights[w].numpy()
            self.matrix_image.set_cmap("magma")
            self.matrix_image.set_data(matrix)
            self.matrix_image.set_clim(0, float(matrix.max()))
            self.matrix_title.set_text(f"attention weights of window {w} (mean of heads)\nrows sum to 1; black = 0")
        else:
            self.matrix_title.set_text("")
        self.no_windows.set_text(
            ""
            if show_table or show_matrix
            else f"no windows at this step:\nthe tensor is a grid {_shape_text(trace.shapes[step])}"
        )

        current = STEPS.index(step)
        self.step_marker.set_y(current)
        for i, (name, label) in enumerate(zip(STEPS, self.step_labels)):
            label.set_text(f"{name}  {_shape_text(trace.shapes[name])}")
            label.colour = "black" if i == current else "#777777"

        window_tokens = [tuple(int(c) for c in np.unravel_index(int(t), layout.padded)) for t in trace.token_ids[w]]
        self.state.update(
            step=step,
            shape=trace.shapes[step],
            shapes=dict(trace.shapes),
            shifted=shifted,
            slice=d,
            window_index=w,
            numbers=numbers,
            padding=padding,
            in_window=in_window,
            matrix=matrix,
            mask=trace.mask[w].numpy(),
            weights=trace.weights[w].numpy(),
            window_tokens=window_tokens,
            trace=trace,
        )
        self.show_info(f"<b>{step}</b> — {_explain(step, trace, w)}")


@register(SwinStepsExplorer)
def swin_steps_explorer(grid=(5, 6, 7), window=4, shift=2, step: str = "input", seed: int = 0) -> SwinStepsExplorer:
    """Step through one shifted Swin window-attention layer: pad, roll, partition, mask, attend, reverse, roll
    back, crop, with the shape of the tensor at each step.

    Args:
        grid: the token grid ``(D, H, W)``; sides that are not multiples of the window show the padding.
        window: the nominal window, an int or one per axis.
        shift: the nominal shift of the shifted block (the checkbox switches to a regular block).
        step: the step to start at, one of :data:`STEPS`.
        seed: seeds the random features and attention weights.
    """
    return SwinStepsExplorer(grid, window, shift, step, seed)
