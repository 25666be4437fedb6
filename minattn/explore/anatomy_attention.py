"""Explorer: pick a voxel of the brain and see where each encoder block of a SwinUNETR lets it look.

Three orthogonal planes through the chosen voxel (axial, coronal, sagittal) show the T1 in grey and,
over it, the attention from the voxel's token to every token of the chosen block
(:func:`minattn.apps.voxel_attention.voxel_attention`), painted on the voxels each token covers.
Stage 1 looks at a box of a few millimetres; by stage 4 one window spans most of the hemisphere. A
shifted block's box is displaced by half a window, and cut where the roll brought in tokens from the
far side. Colours are the weight divided by the block's largest weight, on a log scale by default,
so the small weights at the window's edges still show.

The encoder runs once, when the explorer is made (:class:`~minattn.apps.voxel_attention.EncoderAttention`);
moving the voxel attends again inside the voxel's windows only, and changing the stage, the block
or the colour scale only redraws.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib import colormaps

from ..apps.anatomy import CLASS_NAMES
from ..apps.voxel_attention import EncoderAttention, VoxelAttention
from ._base import Explorer, ExplorerError
from .controls import int_slider
from .registry import register

__all__ = ["PLANES", "AnatomyAttentionExplorer", "anatomy_attention_explorer", "label_borders"]

# plane name -> the axis it holds fixed; rows and columns are the other two axes, in (D, H, W) order
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}
_AXIS_NAMES = ("z", "y", "x")  # the sliders' names for D, H, W
LOG_DECADES = 3  # the log scale shows weights down to 10**-3 of the block's largest
_CMAP = colormaps["plasma"]
_OPACITY = 0.75
_MARKER = "#00e5ff"
_BORDER = "#39ff14"


def label_borders(labels: np.ndarray) -> np.ndarray:
    """Segments between neighbouring cells of a 2D label image whose labels differ.

    Cell ``(row, col)`` spans ``[col, col + 1] x [row, row + 1]`` (imshow with extent
    ``(0, cols, rows, 0)``).

    Returns:
        float ``(K, 2, 2)``: K segments ``[(x0, y0), (x1, y1)]``, for a ``LineCollection``.
    """
    labels = np.asarray(labels)
    r, c = np.nonzero(labels[:, 1:] != labels[:, :-1])  # border left of cell (r, c + 1)
    vertical = np.stack([np.stack([c + 1, r], -1), np.stack([c + 1, r + 1], -1)], 1)
    r, c = np.nonzero(labels[1:, :] != labels[:-1, :])  # border above cell (r + 1, c)
    horizontal = np.stack([np.stack([c, r + 1], -1), np.stack([c + 1, r + 1], -1)], 1)
    return np.concatenate([vertical, horizontal]).astype(float).reshape(-1, 2, 2)


def _as_polyline(segments: np.ndarray) -> tuple:
    """``(K, 2, 2)`` segments -> ``(x, y)`` of one line broken by NaNs: one path to draw, not K."""
    points = np.concatenate([segments, np.full((len(segments), 1, 2), np.nan)], 1).reshape(-1, 2)
    return points[:, 0], points[:, 1]


def weight_colours(weights: np.ndarray, top: float, scale: str) -> np.ndarray:
    """RGBA ``(*weights.shape, 4)``: the weights over ``top`` coloured, transparent where 0.

    ``scale="log"`` spreads ``10**-3 .. 1`` of ``top`` over the colour map (smaller weights get its
    first colour); ``"linear"`` spreads ``0 .. 1``.
    """
    ratio = np.asarray(weights, dtype=float) / (top if top > 0 else 1.0)
    if scale == "log":
        with np.errstate(divide="ignore"):
            level = np.clip(1 + np.log10(ratio) / LOG_DECADES, 0, 1)
    else:
        level = np.clip(ratio, 0, 1)
    colours = _CMAP(level)
    colours[..., 3] = np.where(ratio > 0, _OPACITY, 0.0)
    return colours


class AnatomyAttentionExplorer(Explorer):
    title = "Where does a voxel look? SwinUNETR's window attention on the brain, stage by stage"
    description = (
        "Three slices of the brain template (axial, coronal, sagittal) through the chosen voxel, marked with a "
        "cross, in grey with thin tissue borders; over them a heat map of where the voxel's window attention "
        "looks at the chosen stage and block, on the colour scale shown by the bar on the right (logarithmic or "
        "linear, as chosen)."
    )

    def __init__(self, model, image: torch.Tensor, labels: torch.Tensor | None = None, voxel=None, pad: str = "zero"):
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError(f"image must be a tensor (D, H, W); received {tuple(getattr(image, 'shape', ()))}")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != image.shape):
            raise ValueError(
                f"labels must be a tensor (D, H, W) = {tuple(image.shape)}, like the image; "
                f"received {tuple(getattr(labels, 'shape', ()))}"
            )
        shape = tuple(image.shape)
        voxel = tuple(s // 2 for s in shape) if voxel is None else voxel
        self.probe = EncoderAttention(model, image, pad=pad)
        self.voxel_result: VoxelAttention = self.probe.at(voxel)  # also checks the voxel
        self.maps_computed = 1  # how often the maps were computed (once per voxel)
        self.image = image.detach().float().cpu().numpy()
        self.labels = labels.detach().cpu().numpy() if labels is not None else None
        low, high = np.percentile(self.image, [0.5, 99.5])
        self._grey = (float(low), float(high) if high > low else float(low) + 1.0)
        controls = {
            **{
                name: int_slider(f"{name} ({'DHW'[axis]})", v, 0, s - 1)
                for axis, (name, v, s) in enumerate(zip(_AXIS_NAMES, self.voxel_result.voxel, shape))
            },
            "stage": widgets.ToggleButtons(
                options=[(str(s), s) for s in range(1, len(self.probe.depths) + 1)],
                value=1,
                description="stage",
                style={"button_width": "36px"},
            ),
            "block": widgets.ToggleButtons(
                options=self._block_options(1), value=0, description="block", style={"button_width": "80px"}
            ),
            "scale": widgets.Dropdown(
                options=[("log (weight / max)", "log"), ("linear (weight / max)", "linear")],
                value="log",
                description="colour",
                layout=widgets.Layout(width="240px"),
            ),
        }
        rows = [list(_AXIS_NAMES), ["stage", "block", "scale"]]
        if self.labels is not None:
            controls["outline"] = widgets.Checkbox(value=True, description="tissue borders")
            rows[1].append("outline")
        self._shown_scale = None
        super().__init__(controls, rows, figsize=(11, 4.6))

    def _block_options(self, stage: int) -> list:
        depth = self.probe.depths[stage - 1]
        kinds = ["shifted" if b % 2 else "regular" for b in range(depth)]
        if depth <= 2:
            return [(kind, b) for b, kind in enumerate(kinds)]
        return [(f"{b + 1}: {kind}", b) for b, kind in enumerate(kinds)]

    # -- controls -------------------------------------------------------------------------------
    def follow(self, name: str, value) -> None:
        if name == "stage":  # stages may differ in depth: offer this stage's blocks, keep the kind
            block = self.controls["block"]
            options = self._block_options(value)
            if list(block.options) != options:
                kept = min(block.value, len(options) - 1)
                block.options = options
                block.value = kept

    # -- drawing --------------------------------------------------------------------------------
    def build(self, figure) -> None:
        figure.set_facecolor("white")  # opaque, so the labels read on a dark notebook theme too
        figure.patch.set_alpha(1.0)
        shape = self.image.shape
        planes = [tuple(s for a, s in enumerate(shape) if a != fixed) for fixed in PLANES.values()]
        grid = figure.add_gridspec(
            # widths in proportion to the columns: every plane is drawn at the same voxel size
            1,
            4,
            width_ratios=[*(cols for _, cols in planes), 0.06 * shape[2]],
            wspace=0.12,
        )
        figure.subplots_adjust(left=0.02, right=0.95, bottom=0.04, top=0.86)
        self.axes = [figure.add_subplot(grid[0, i]) for i in range(3)]
        self.ax_colourbar = figure.add_subplot(grid[0, 3])
        self.planes = {}
        for ax, (name, fixed), (rows, cols) in zip(self.axes, PLANES.items(), planes):
            ax.set_xticks([])
            ax.set_yticks([])
            extent = (0, cols, rows, 0)
            grey = ax.imshow(
                np.zeros((rows, cols)),
                cmap="gray",
                vmin=self._grey[0],
                vmax=self._grey[1],
                interpolation="nearest",
                extent=extent,
            )
            heat = ax.imshow(np.zeros((rows, cols, 4)), interpolation="nearest", extent=extent)
            (borders,) = ax.plot([], [], color=_BORDER, linewidth=0.6, alpha=0.8)
            vline = ax.axvline(0, color=_MARKER, linewidth=0.6, linestyle=(0, (3, 3)), alpha=0.8)
            hline = ax.axhline(0, color=_MARKER, linewidth=0.6, linestyle=(0, (3, 3)), alpha=0.8)
            (marker,) = ax.plot([0], [0], marker="+", markersize=11, markeredgewidth=2, color=_MARKER)
            ax.set_xlim(0, cols)
            ax.set_ylim(rows, 0)
            self.dynamic(grey, heat, borders, vline, hline, marker)
            self.planes[name] = dict(
                fixed=fixed,
                grey=grey,
                heat=heat,
                borders=borders,
                vline=vline,
                hline=hline,
                marker=marker,
                title=self.label(ax, fontsize=9),
            )
        self.ax_colourbar.imshow(np.linspace(1, 0, 256)[:, None], cmap=_CMAP, aspect="auto", extent=(0, 1, 0, 1))
        self.ax_colourbar.set_xticks([])
        self.ax_colourbar.yaxis.tick_right()
        self.ax_colourbar.tick_params(labelsize=8)

    def _set_scale(self, scale: str) -> None:
        """Label the colour bar (a static part of the figure: redrawn in full when it changes)."""
        if scale == self._shown_scale:
            return
        if scale == "log":
            ticks = np.linspace(0, 1, LOG_DECADES + 1)
            labels = [f"1e-{LOG_DECADES - i}" if i < LOG_DECADES else "1" for i in range(LOG_DECADES + 1)]
            labels[0] = "\u2264" + labels[0]  # smaller weights get the first colour too
        else:
            ticks, labels = [0, 0.5, 1], ["0", "0.5", "1"]
        self.ax_colourbar.set_yticks(ticks, labels)
        self.ax_colourbar.set_title("weight\n/ max", fontsize=8)
        self._shown_scale = scale
        self.invalidate()

    def update(self) -> None:
        shape = self.image.shape
        voxel = tuple(self.value(name) for name in _AXIS_NAMES)
        if any(not 0 <= v < s for v, s in zip(voxel, shape)):
            raise ExplorerError(f"the voxel {voxel} must lie inside the image {shape}")
        if voxel != self.voxel_result.voxel:
            self.voxel_result = self.probe.at(voxel)
            self.maps_computed += 1
        stage, block_index, scale = self.value("stage"), self.value("block"), self.value("scale")
        block = self.voxel_result.block(stage, block_index)
        self._set_scale(scale)
        top = block.max_weight
        outline = self.labels is not None and self.value("outline")
        drawn = {}
        for name, plane in self.planes.items():
            fixed = plane["fixed"]
            index = (slice(None),) * fixed + (voxel[fixed],)
            weights = block.plane(fixed, voxel[fixed]).cpu().numpy()
            plane["grey"].set_data(self.image[index])
            plane["heat"].set_data(weight_colours(weights, top, scale))
            row, col = (v for a, v in enumerate(voxel) if a != fixed)
            plane["marker"].set_data([col + 0.5], [row + 0.5])
            plane["vline"].set_xdata([col + 0.5, col + 0.5])
            plane["hline"].set_ydata([row + 0.5, row + 0.5])
            segments = label_borders(self.labels[index]) if outline else np.zeros((0, 2, 2))
            plane["borders"].set_data(*_as_polyline(segments))
            plane["segments"] = len(segments)
            plane["title"].set_text(f"{name} ({_AXIS_NAMES[fixed]} = {voxel[fixed]})")
            drawn[name] = weights
        shifted = "shifted" if block.shifted else "regular"
        if block.kind == "shifted" and not block.shifted:
            shifted = "shifted block, no shift on this grid"
        window = "x".join(map(str, block.window_voxels))
        tokens = "x".join(map(str, block.layout.window))
        self.state.update(
            voxel=voxel,
            stage=stage,
            block=block_index,
            kind=block.kind,
            scale=scale,
            planes=drawn,
            image_planes={name: p["grey"].get_array() for name, p in self.planes.items()},
            max_weight=top,
            tokens_attended=block.tokens_attended,
            window_voxels=block.window_voxels,
            outline_segments=sum(p["segments"] for p in self.planes.values()),
        )
        shift = ""
        if block.shifted:
            shift = f", shifted by {'x'.join(map(str, block.shift_voxels))} voxels"
        padding = float(block.padding_weight.mean())
        self.state["padding_weight"] = padding
        # zero tokens that fill the grid out to whole windows can draw weight too: say how much
        on_padding = (
            f" {100 * padding:.1f}% goes to the zero tokens that pad the grid to whole windows."
            if padding >= 5e-4
            else ""
        )
        tissue = ""
        if self.labels is not None:
            tissue = (
                f" (voxel in {CLASS_NAMES[int(self.labels[voxel])]})" if self.labels[voxel] < len(CLASS_NAMES) else ""
            )
        self.show_info(
            f"stage {stage}, {shifted} block: one token = {block.token_size}<sup>3</sup> voxels; "
            f"window {tokens} tokens = {window} voxels{shift}. "
            f"The voxel's token{tissue} attends to {block.tokens_attended} tokens; "
            f"max weight {top:.4f} (heads averaged; uniform over the window would be "
            f"{1 / block.layout.tokens_per_window:.4f}).{on_padding}"
        )


@register(AnatomyAttentionExplorer)
def anatomy_attention_explorer(
    model, image: torch.Tensor, labels: torch.Tensor | None = None, voxel=None
) -> AnatomyAttentionExplorer:
    """Three planes through a voxel of the brain, with the attention its token gives in each encoder block.

    Args:
        model: a :class:`minattn.SwinUNETR` (e.g. the lesson's trained tissue segmenter).
        image: float ``(D, H, W)``, e.g. ``anatomy.hemispheres().test_image`` ``(95, 117, 49)``;
            padded with zeros to multiples of 32 for the model, the maps cropped back.
        labels: optional long ``(D, H, W)`` tissue labels (:data:`minattn.apps.anatomy.CLASS_NAMES`);
            their borders are drawn and the voxel's tissue is named.
        voxel: ``(z, y, x)`` = ``(d, h, w)`` to start on (default: the centre of the image).

    The sliders move the voxel; the stage (1 to 4) and block (regular / shifted) pick the map.
    """
    return AnatomyAttentionExplorer(model, image, labels, voxel)
