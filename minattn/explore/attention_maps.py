"""Explorer 9: attention as a microscope, slice by slice.

Scroll through a test volume next to what a trained lesion detector
(:class:`minattn.apps.microscope.SwinClassifier`) attends to: the attention
each token receives in one block, or the attention rollout across all blocks
(:func:`minattn.apps.microscope.attention_maps`), drawn over the slice with the
true lesion outlined. The line below the figure gives the model's probability
and how many times more attention falls inside the lesion than chance would
put there (:func:`minattn.apps.microscope.lesion_attention_ratio`).

The maps of a volume are computed once, when it is chosen (one forward pass with
the weights recorded); scrolling, changing the view or the layer only redraws.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection

from ..apps.microscope import LesionVolumes, attention_maps, predict
from ._base import Explorer, ExplorerError
from .controls import set_slider_range
from .registry import register

__all__ = ["AttentionMapExplorer", "attention_map_explorer", "outline_segments"]

_AXES = {"D": 0, "H": 1, "W": 2}
_VIEW_NAMES = {"D": "axial (fixed D)", "H": "coronal (fixed H)", "W": "sagittal (fixed W)"}


def outline_segments(mask: np.ndarray) -> list:
    """Line segments ``[(x0, y0), (x1, y1)]`` along the border of the True cells of a 2D mask.

    Cell ``(row, col)`` spans ``[col, col + 1] x [row, row + 1]`` (imshow with extent
    ``(0, cols, rows, 0)``). Empty for an all-False mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    padded = np.pad(mask, 1)
    segments = []
    # vertical borders: cells whose left or right neighbour differs
    for r, c in zip(*np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])):
        segments.append([(c, r), (c, r + 1)])
    # horizontal borders: cells whose upper or lower neighbour differs
    for r, c in zip(*np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])):
        segments.append([(c, r), (c + 1, r)])
    return segments


class AttentionMapExplorer(Explorer):
    title = "Attention as a microscope: where does the lesion detector look?"
    description = (
        "Three panels: a slice of the test volume with the lesion outlined in cyan, the chosen attention map "
        "(such as the rollout: attention received, dark = little, bright = much), and the map laid over the slice "
        "with the model's probability of a lesion."
    )

    def __init__(self, model, volumes, masks=None, index: int | None = None, layer: str = "rollout"):
        lesions = None
        if isinstance(volumes, LesionVolumes):
            masks = volumes.masks if masks is None else masks
            lesions = volumes.lesions
            volumes = volumes.volumes
        if not isinstance(volumes, torch.Tensor) or volumes.ndim != 5 or volumes.shape[0] == 0:
            raise ValueError(
                "volumes must be a LesionVolumes or a tensor (B, C, D, H, W) with B >= 1; "
                f"received {tuple(getattr(volumes, 'shape', ()))}"
            )
        if masks is not None and (
            not isinstance(masks, torch.Tensor) or tuple(masks.shape) != (volumes.shape[0], *volumes.shape[2:])
        ):
            raise ValueError(
                f"masks must have shape (B, D, H, W) = {(volumes.shape[0], *volumes.shape[2:])}; "
                f"received {tuple(getattr(masks, 'shape', ()))}"
            )
        self.model = model.eval()
        self.volumes = volumes.detach().cpu()
        self.masks = masks.detach().cpu().bool() if masks is not None else None
        self.lesions = lesions
        self._maps: dict = {}  # volume index -> (maps dict of (D, H, W) arrays, probability)
        self._shown_volume = None
        self.layer_options = None
        with torch.no_grad():
            probe = attention_maps(model, self.volumes[:1])
        self.layer_options = list(probe)
        if layer not in self.layer_options:
            raise ValueError(f"layer must be one of {self.layer_options}; received {layer!r}")
        if index is None:  # start on the first volume with a lesion, the interesting case
            has = self.masks.flatten(1).any(1).nonzero() if self.masks is not None else torch.zeros(0)
            index = int(has[0]) if len(has) else 0
        style = {"description_width": "initial"}
        D = self.volumes.shape[2]
        if not 0 <= index < self.volumes.shape[0]:
            raise ValueError(f"index must lie in 0..{self.volumes.shape[0] - 1}; received {index}")
        start = self._lesion_centre(index, 0)
        controls = {
            "volume": widgets.IntSlider(
                value=index, min=0, max=self.volumes.shape[0] - 1, description="test volume", style=style
            ),
            "view": widgets.Dropdown(options=[(v, k) for k, v in _VIEW_NAMES.items()], value="D", description="view"),
            "slice": widgets.IntSlider(
                value=D // 2 if start is None else start, min=0, max=D - 1, description="slice", style=style
            ),
            "layer": widgets.Dropdown(options=self.layer_options, value=layer, description="map", style=style),
            "opacity": widgets.FloatSlider(
                value=0.6, min=0.0, max=1.0, step=0.05, description="overlay opacity", style=style
            ),
        }
        super().__init__(controls, [["volume", "view", "slice"], ["layer", "opacity"]], figsize=(11, 4.0))

    # -- controls -------------------------------------------------------------------------------
    def follow(self, name: str, value) -> None:
        if name in ("volume", "view"):
            self._jump_to_lesion()

    def _jump_to_lesion(self) -> None:
        """Put the slice slider on the range of the view and, if there is a lesion, through its centre."""
        axis = _AXES[self.value("view")]
        slider = self.controls["slice"]
        set_slider_range(slider, 0, self.volumes.shape[2 + axis] - 1)
        centre = self._lesion_centre(self.value("volume"), axis)
        if centre is not None:
            slider.value = centre

    def _lesion_centre(self, index: int, axis: int) -> int | None:
        """The slice through the centre of volume ``index``'s lesion along ``axis``; None without one."""
        if self.masks is None or not 0 <= index < len(self.masks) or not bool(self.masks[index].any()):
            return None
        return round(float(self.masks[index].nonzero().float().mean(0)[axis]))

    # -- computing ------------------------------------------------------------------------------
    def maps_for(self, index: int):
        """``(maps, probability)`` for volume ``index``: maps name -> ``(D, H, W)`` numpy array."""
        if index not in self._maps:
            volume = self.volumes[index : index + 1]
            maps = {name: m[0].numpy() for name, m in attention_maps(self.model, volume).items()}
            probability = float(predict(self.model, volume)[0])
            if len(self._maps) >= 32:
                self._maps.pop(next(iter(self._maps)))
            self._maps[index] = (maps, probability)
        return self._maps[index]

    # -- drawing --------------------------------------------------------------------------------
    def build(self, figure) -> None:
        axes = figure.subplots(1, 3)
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.84, wspace=0.05)
        self.ax_image, self.ax_map, self.ax_overlay = axes
        for ax in axes:
            ax.set_axis_off()
        blank = np.zeros((2, 2))
        self.image = self.dynamic(self.ax_image.imshow(blank, cmap="gray", vmin=-1, vmax=1, interpolation="nearest"))
        self.map_image = self.dynamic(
            self.ax_map.imshow(blank, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        )
        self.under = self.dynamic(self.ax_overlay.imshow(blank, cmap="gray", vmin=-1, vmax=1, interpolation="nearest"))
        self.overlay = self.dynamic(self.ax_overlay.imshow(np.zeros((2, 2, 4)), interpolation="nearest"))
        self.outlines = [
            self.dynamic(ax.add_collection(LineCollection([], colors="#00e5ff", linewidths=1.4)))
            for ax in (self.ax_image, self.ax_map, self.ax_overlay)
        ]
        self.titles = [self.label(ax, fontsize=9) for ax in axes]
        self._colours = None

    def update(self) -> None:
        index = self.value("volume")
        if not 0 <= index < self.volumes.shape[0]:
            raise ExplorerError(f"volume must lie in 0..{self.volumes.shape[0] - 1}; received {index}")
        view, layer = self.value("view"), self.value("layer")
        axis = _AXES[view]
        extent = self.volumes.shape[2 + axis]
        slice_index = self.value("slice")
        if not 0 <= slice_index < extent:
            raise ExplorerError(
                f"slice must lie in 0..{extent - 1} for the {_VIEW_NAMES[view]} view; received {slice_index}"
            )
        maps, probability = self.maps_for(index)
        volume_map = maps[layer]
        image = self.volumes[index, 0].numpy()
        image_slice = np.take(image, slice_index, axis=axis)
        # The map covers the voxels the tokens cover; crop the image to the same extent.
        map_slice = np.take(volume_map, min(slice_index, volume_map.shape[axis] - 1), axis=axis)
        rows, cols = map_slice.shape
        image_slice = image_slice[:rows, :cols]
        vmax = float(volume_map.max()) or 1.0  # one colour scale per volume and map, so slices compare
        extent_box = (0, cols, rows, 0)
        for artist, data in ((self.image, image_slice), (self.under, image_slice), (self.map_image, map_slice)):
            artist.set_data(data)
            artist.set_extent(extent_box)
        self.map_image.set_clim(0.0, vmax)
        colours = self.map_image.cmap(np.clip(map_slice / vmax, 0, 1))
        colours[..., 3] = self.value("opacity") * np.clip(map_slice / vmax, 0, 1) ** 0.7
        self.overlay.set_data(colours)
        self.overlay.set_extent(extent_box)
        for ax in (self.ax_image, self.ax_map, self.ax_overlay):
            ax.set_xlim(0, cols)
            ax.set_ylim(rows, 0)

        mask_slice = None
        share = chance = ratio = None
        if self.masks is not None:
            mask = self.masks[index].numpy()
            mask_slice = np.take(mask, slice_index, axis=axis)[:rows, :cols]
            segments = outline_segments(mask_slice)
            if mask.any():
                cropped = mask[: volume_map.shape[0], : volume_map.shape[1], : volume_map.shape[2]]
                share = float((volume_map * cropped).sum() / volume_map.sum())
                chance = float(cropped.mean())
                ratio = share / chance if chance > 0 else None
        else:
            segments = []
        for outline in self.outlines:
            outline.set_segments(segments)

        truth = "no lesion" if self.masks is None or not self.masks[index].any() else "lesion"
        lesion = self.lesions[index] if self.lesions is not None else None
        detail = (
            f" (radius {lesion['radius']:.1f} vox, +{lesion['contrast']:.0f} HU)" if isinstance(lesion, dict) else ""
        )
        self.titles[0].set_text(f"volume {index}: {truth}{detail}\n{_VIEW_NAMES[view]} slice {slice_index}")
        self.titles[1].set_text(f"{layer}: attention received\n(colour scale: this volume's maximum)")
        self.titles[2].set_text(f"overlay; model p(lesion) = {probability:.2f}\ncyan: true lesion outline")

        self.state.update(
            volume=index,
            view=view,
            slice_index=slice_index,
            layer=layer,
            probability=probability,
            image=image_slice,
            map=map_slice,
            mask=mask_slice,
            share_in_lesion=share,
            chance_share=chance,
            ratio=ratio,
            outline_segments=len(segments),
        )
        if ratio is None:
            text = (
                f"model p(lesion) = {probability:.2f}. This volume has no lesion outline to compare with: look at where "
                "the map is bright all the same."
            )
        else:
            text = (
                f"model p(lesion) = {probability:.2f}. {layer}: {100 * share:.1f}% of the attention falls inside the "
                f"lesion, which fills {100 * chance:.2f}% of the volume: {ratio:.1f}x chance."
            )
        self.show_info(text)


@register(AttentionMapExplorer)
def attention_map_explorer(
    model, volumes, masks=None, index: int | None = None, layer: str = "rollout"
) -> AttentionMapExplorer:
    """Scroll a test volume's slices next to the model's attention map and the lesion outline.

    Args:
        model: a trained :class:`minattn.apps.microscope.SwinClassifier`.
        volumes: a :class:`minattn.apps.microscope.LesionVolumes` (masks and lesion details
            come with it) or a tensor ``(B, C, D, H, W)``.
        masks: bool ``(B, D, H, W)`` lesion masks, when ``volumes`` is a tensor (optional).
        index: the volume to show first (default: the first with a lesion).
        layer: ``"rollout"`` or a block's name (``"block 1 (regular)"``, ...).
    """
    return AttentionMapExplorer(model, volumes, masks, index, layer)
