"""Explorer 2: cutting a volume into patch tokens.

Scroll the slices of a volume (by default the MNI152 brain template that ships
with nilearn) with the patch grid drawn over it. The patch size sets how many
tokens the volume becomes (:func:`minattn.cost.num_tokens`) and how many
parameters the patch projection has (:func:`minattn.cost.patch_embed_params`,
``E (p^3 C + 1)``). The right panel shows one patch flattened into the vector
a token starts from (:func:`minattn.patchify`).

A volume whose sides are not multiples of the patch is padded at the end (as
Swin pads), cropped, or refused with a message, as the "fit" control says.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle

from .._validate import ceil_div
from ..cost import num_tokens, patch_embed_params
from ..patches import patchify
from ..windows import pad_to_windows
from ._base import Explorer, ExplorerError
from .controls import set_slider_range
from .registry import register

__all__ = ["PatchExplorer", "patch_explorer"]

_AXES = {"D": 0, "H": 1, "W": 2}
_AXIS_NAMES = {"D": "axial slice (fixed D)", "H": "coronal slice (fixed H)", "W": "sagittal slice (fixed W)"}


class PatchExplorer(Explorer):
    title = "From voxels to tokens: 3D patches"
    description = (
        "Left: a slice of the brain volume with the grid of p x p x p patches drawn over it, the padding dashed "
        "and one patch outlined in red; right: that patch flattened into its token vector, value against "
        "position."
    )

    def __init__(self, volume: torch.Tensor | None = None, source: str | None = None):
        if volume is None:
            from ..data import load_mni152

            volume = load_mni152()
            source = source or "MNI152 T1 template, 2 mm (nilearn)"
        if not isinstance(volume, torch.Tensor) or volume.ndim != 3 or volume.shape.numel() == 0:
            raise ValueError(f"volume must be a 3D tensor (D, H, W); received {getattr(volume, 'shape', type(volume))}")
        self.volume = volume.detach().float().cpu()
        self.source = source or "volume"
        low, high = np.percentile(self.volume.numpy(), [1, 99.5])
        self._range = (float(low), float(high) if high > low else float(low) + 1)
        self._tokens_cache: dict = {}
        style = {"description_width": "initial"}
        D = self.volume.shape[0]
        controls = {
            "axis": widgets.Dropdown(options=[(v, k) for k, v in _AXIS_NAMES.items()], value="D", description="view"),
            "slice": widgets.IntSlider(value=D // 2, min=0, max=D - 1, description="slice", style=style),
            "patch": widgets.IntSlider(value=8, min=1, max=32, description="patch p", style=style),
            "fit": widgets.Dropdown(
                options=[
                    ("pad the end (as Swin)", "pad"),
                    ("crop the end", "crop"),
                    ("neither: p must divide", "none"),
                ],
                value="pad",
                description="fit",
                style=style,
            ),
            "channels": widgets.IntSlider(value=1, min=1, max=4, description="channels C", style=style),
            "embed_dim": widgets.Dropdown(
                options=[32, 48, 64, 96, 128, 192, 256, 384, 768], value=128, description="E"
            ),
        }
        self._last_axis = "D"
        super().__init__(controls, [["axis", "slice", "patch"], ["fit", "channels", "embed_dim"]], figsize=(10, 4.2))

    def follow(self, name: str, value) -> None:
        # A new view, patch or fit changes the slice range.
        if name in ("axis", "patch", "fit"):
            self._sync_slice_range()

    def _sync_slice_range(self) -> None:
        try:
            shape = self._fitted_shape()
        except ValueError:
            return  # update() will show the message
        axis, slider = self.value("axis"), self.controls["slice"]
        new_max = shape[_AXES[axis]] - 1
        if axis != self._last_axis:  # a new view: keep the relative position
            fraction = slider.value / max(1, slider.max)
            self._last_axis = axis
            set_slider_range(slider, 0, new_max)
            slider.value = round(fraction * new_max)
        else:
            set_slider_range(slider, 0, new_max)

    def _fitted_shape(self) -> tuple[int, int, int]:
        p, fit = self.value("patch"), self.value("fit")
        shape = tuple(self.volume.shape)
        if fit == "pad":
            return tuple(ceil_div(s, p) * p for s in shape)
        if fit == "crop":
            if any(s < p for s in shape):
                raise ExplorerError(f"patch {p} is larger than the volume {shape}: nothing is left after cropping")
            return tuple(s // p * p for s in shape)
        num_tokens(shape, p)  # raises the package's message when p does not divide the shape
        return shape

    def _fitted(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted volume ``(D', H', W')`` and its tokens ``(N, p^3)`` (cached per patch and fit)."""
        key = (self.value("patch"), self.value("fit"))
        if key not in self._tokens_cache:
            p, fit = key
            vol = self.volume
            if fit == "pad":
                vol = pad_to_windows(vol[None, ..., None], p)[0, ..., 0]  # zero-pad the end of each axis
            elif fit == "crop":
                shape = self._fitted_shape()
                vol = vol[: shape[0], : shape[1], : shape[2]]
            tokens = patchify(vol[None, None], p)[0]  # (N, C p^3) with C = 1
            self._tokens_cache = {key: (vol, tokens)}  # keep one: volumes can be large
        return self._tokens_cache[key]

    def build(self, figure) -> None:
        grid = figure.add_gridspec(1, 2, width_ratios=[1.25, 1])
        figure.subplots_adjust(left=0.01, right=0.98, bottom=0.1, top=0.88, wspace=0.08)
        ax = self.ax_slice = figure.add_subplot(grid[0])
        ax.set_axis_off()  # no ticks: limits can change without redrawing the background
        low, high = self._range
        self.slice_image = self.dynamic(
            ax.imshow(np.zeros((2, 2)), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        )
        self.grid_lines = self.dynamic(
            ax.add_collection(LineCollection([], colors="#ffb000", linewidths=0.6, alpha=0.8))
        )
        self.extent_box = self.dynamic(ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, ec="#40c0ff", lw=1.2, ls="--")))
        self.patch_box = self.dynamic(ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, ec="#ff3030", lw=2)))
        self.slice_title = self.label(ax, fontsize=10)

        ax2 = self.ax_vector = figure.add_subplot(grid[1])
        ax2.set_xlim(0, 1)
        ax2.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
        ax2.set_xticks([])
        ax2.set_xlabel("position in the flattened patch vector (0 ... p^3 C - 1)", fontsize=9)
        ax2.tick_params(labelsize=8)
        (self.vector_line,) = ax2.plot([], [], color="#c02020", lw=0.8)
        self.dynamic(self.vector_line)
        self.vector_title = self.label(ax2, fontsize=10)

    def update(self) -> None:
        p, axis = self.value("patch"), self.value("axis")
        channels, embed = self.value("channels"), self.value("embed_dim")
        shape = self._fitted_shape()
        vol, tokens = self._fitted()
        grid = tuple(s // p for s in shape)
        n_tokens = num_tokens(shape, p)
        params = patch_embed_params(p, channels, embed)
        vector_length = channels * p**3

        a = _AXES[axis]
        index = min(self.value("slice"), shape[a] - 1)
        image = vol.select(a, index).numpy()
        rows, cols = image.shape  # in-plane axes: the two of (D, H, W) other than a
        plane_axes = [i for i in range(3) if i != a]
        self.slice_image.set_data(image)
        self.slice_image.set_extent((0, cols, rows, 0))
        self.ax_slice.set_xlim(0, cols)
        self.ax_slice.set_ylim(rows, 0)
        segments = [[(x, 0), (x, rows)] for x in range(0, cols + 1, p)]
        segments += [[(0, y), (cols, y)] for y in range(0, rows + 1, p)]
        self.grid_lines.set_segments(segments if p > 1 or rows * cols <= 64 * 64 else [])
        orig = [self.volume.shape[i] for i in plane_axes]
        self.extent_box.set_bounds(0, 0, orig[1], orig[0])
        self.extent_box.set_visible(self.value("fit") == "pad" and tuple(orig) != (rows, cols))  # the real data

        # Highlight the patch under the centre of the slice and show its flattened vector.
        centre = [0, 0, 0]
        centre[a] = index
        centre[plane_axes[0]], centre[plane_axes[1]] = rows // 2, cols // 2
        cell = [c // p for c in centre]
        flat = (cell[0] * grid[1] + cell[1]) * grid[2] + cell[2]  # row-major (d, h, w), as patchify orders tokens
        self.patch_box.set_bounds(cell[plane_axes[1]] * p, cell[plane_axes[0]] * p, p, p)
        vector = tokens[flat].numpy()
        self.vector_line.set_data(np.linspace(0, 1, vector.size) if vector.size > 1 else [0.5], vector)
        self.vector_title.set_text(
            f"token {flat} = patch {tuple(cell)}: {p}x{p}x{p} x C={channels} -> {vector_length:,} numbers"
            + (" (channel 1 shown)" if channels > 1 else "")
        )
        pad_note = {"pad": "padded to", "crop": "cropped to", "none": "used as"}[self.value("fit")]
        self.slice_title.set_text(f"{_AXIS_NAMES[axis]} {index}: grid of {p}^3 patches, token layer {index // p}")

        self.state.update(
            patch=p,
            axis=axis,
            slice_index=index,
            shape=tuple(self.volume.shape),
            fitted_shape=shape,
            grid=grid,
            tokens=n_tokens,
            vector_length=vector_length,
            params=params,
            token_index=flat,
            patch_vector=vector,
            slice=image,
        )
        text = (
            f"{self.source} {tuple(self.volume.shape)} {pad_note} {shape} -> grid {grid[0]}x{grid[1]}x{grid[2]} = "
            f"<b>{n_tokens:,} tokens</b>; each patch flattens to p^3 C = {vector_length:,} numbers; "
            f"projection to E = {embed}: E (p^3 C + 1) = {embed} x {vector_length + 1:,} = <b>{params:,} parameters</b>"
        )
        self.show_info(text)


@register(PatchExplorer)
def patch_explorer(volume: torch.Tensor | None = None, source: str | None = None) -> PatchExplorer:
    """Scroll a volume ``(D, H, W)`` with its patch grid; patch size -> tokens and parameters.

    Args:
        volume: a 3D tensor; defaults to the MNI152 template (:func:`minattn.data.load_mni152`).
        source: a name for the volume in the info line.
    """
    return PatchExplorer(volume, source)
