"""Explorer 10: attention-MIL as a microscope, one bag at a time.

A bag (a 64 x 64 crop of the real CT slice, :mod:`minattn.apps.mil`) is shown
as the grid of its 16 tile instances, pulled slightly apart. Each tile's frame
is coloured and thickened by the attention weight the trained model gave it;
the middle panel lists the weights on the 4 x 4 grid; the right panel plots
them in tile order against the uniform weight ``1/K`` that mean pooling would
use, with the tiles that really hold a nodule in red. The nodules themselves
(hidden from training) can be circled.

Controls: the bag, the pooling (plain or gated attention, or any trained
models passed in), and whether to reveal the hidden nodules.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from ..apps.mil import MILBags, MILModel, make_bags, train_mil
from ._base import Explorer, ExplorerError, Heatmap
from .registry import register

__all__ = ["MILExplorer", "mil_explorer"]

_GAP = 3  # pixels between tiles in the instance grid
_CMAP = colormaps["magma"]


class MILExplorer(Explorer):
    title = "Attention MIL: which tiles did the bag decision read?"
    description = (
        "Three panels: the bag's 16 tiles, each framed by its attention weight; the weights on the 4 x 4 tile "
        "grid; and a bar per tile (red: the tile holds a nodule) against the dashed 1/K line of mean pooling."
    )

    def __init__(self, models: dict | None = None, bags: MILBags | None = None):
        if models is None:
            train = make_bags(400, seed=0)
            models = {
                "plain attention": train_mil(train, "attention", progress=False)[0],
                "gated attention": train_mil(train, "gated", progress=False)[0],
            }
        if not isinstance(models, dict) or not models or not all(isinstance(m, MILModel) for m in models.values()):
            raise ValueError(f"models must be a non-empty dict name -> MILModel; received {type(models).__name__}")
        self.bags = make_bags(48, seed=1) if bags is None else bags
        if not isinstance(self.bags, MILBags):
            raise ValueError(  # noqa: TRY004 - the package's bad-input error is a ValueError
                f"bags must be MILBags (minattn.apps.mil.make_bags); received {type(self.bags).__name__}"
            )
        self.models = models
        # Everything the explorer shows is computed once: an update only picks rows.
        self._results = {}
        with torch.no_grad():
            for name, model in models.items():
                model.eval()
                logits, weights = model(self.bags.features)
                self._results[name] = (torch.sigmoid(logits).numpy(), weights.numpy())
        n = len(self.bags)
        style = {"description_width": "initial"}
        controls = {
            "bag": widgets.IntSlider(value=self._first_positive(), min=0, max=n - 1, description="bag", style=style),
            "pooling": widgets.ToggleButtons(options=list(models), description="pooling", style=style),
            "truth": widgets.Checkbox(value=True, description="show the hidden nodules", style=style),
        }
        super().__init__(controls, [["bag", "truth"], ["pooling"]], figsize=(12, 4.2))

    def _first_positive(self) -> int:
        positives = self.bags.bag_labels.nonzero()
        return int(positives[0]) if len(positives) else 0

    def _spread(self, image: np.ndarray) -> np.ndarray:
        """The bag image ``(side, side)`` with ``_GAP`` pixels of NaN (blank) between tiles."""
        g, t = self.bags.grid, self.bags.tile
        size = g * t + (g - 1) * _GAP
        out = np.full((size, size), np.nan)
        for r in range(g):
            for c in range(g):
                y, x = r * (t + _GAP), c * (t + _GAP)
                out[y : y + t, x : x + t] = image[r * t : (r + 1) * t, c * t : (c + 1) * t]
        return out

    def _to_spread(self, coordinate: float) -> float:
        """A pixel coordinate of the bag image -> the same point in the spread-out grid."""
        return coordinate + (int(coordinate) // self.bags.tile) * _GAP

    def build(self, figure) -> None:
        g, t = self.bags.grid, self.bags.tile
        k = g * g
        ax_tiles, ax_grid, ax_bars = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.0, 1.4]})
        figure.subplots_adjust(left=0.02, right=0.98, bottom=0.14, top=0.84, wspace=0.25)
        self.ax_tiles, self.ax_grid, self.ax_bars = ax_tiles, ax_grid, ax_bars
        ax_tiles.set_axis_off()
        ax_tiles.set_title("the bag: 16 tile instances\nframe = attention weight", fontsize=9)
        cmap = colormaps["gray"].with_extremes(bad="white")  # the NaN gaps between tiles
        size = g * t + (g - 1) * _GAP
        self.tiles_image = self.dynamic(
            ax_tiles.imshow(np.zeros((size, size)), cmap=cmap, vmin=-0.3, vmax=1.2, interpolation="nearest")
        )
        ax_tiles.set_xlim(-2, size + 1)
        ax_tiles.set_ylim(size + 1, -2)
        self.frames = []
        for i in range(k):
            y, x = (i // g) * (t + _GAP), (i % g) * (t + _GAP)
            frame = Rectangle((x - 1, y - 1), t + 1, t + 1, fill=False, lw=1.0, ec="black")
            self.frames.append(self.dynamic(ax_tiles.add_patch(frame)))
        self.nodule_marks = self.dynamic(
            ax_tiles.scatter([], [], s=160, facecolors="none", edgecolors="#00e5ff", linewidths=1.5)
        )
        self.grid_map = Heatmap(self, ax_grid, max_cells=k, cmap="magma", fmt="{:.2f}".format, fontsize=9)
        ax_grid.set_title("attention weight per tile (sums to 1)", fontsize=9)
        ax_grid.set_xlabel("tile column")
        ax_grid.set_ylabel("tile row")
        self.bars = ax_bars.bar(range(k), np.zeros(k), color="#9e9e9e", edgecolor="black", linewidth=0.5)
        self.dynamic(*self.bars)
        ax_bars.axhline(1.0 / k, color="#1f77b4", ls="--", lw=1)
        ax_bars.text(k - 0.5, 1.0 / k, " 1/K = mean pooling", color="#1f77b4", fontsize=8, va="bottom", ha="right")
        ax_bars.set_xlim(-0.6, k - 0.4)
        ax_bars.set_ylim(0, 1.0)
        ax_bars.set_xticks(range(k))
        ax_bars.tick_params(labelsize=7)
        ax_bars.set_xlabel("tile (row-major); red = holds a nodule (hidden label)")
        ax_bars.set_ylabel("attention weight $a_k$")
        self.bars_title = self.label(ax_bars, fontsize=9)
        self.tiles_label = self.label(ax_tiles, y=-0.02, va="top", fontsize=9)

    def update(self) -> None:
        bag = int(self.value("bag"))
        pooling = self.value("pooling")
        if not 0 <= bag < len(self.bags):
            raise ExplorerError(f"bag must be in 0..{len(self.bags) - 1}; received {bag}")
        probabilities, all_weights = self._results[pooling]
        weights = all_weights[bag]
        truth = self.bags.instance_labels[bag].numpy()
        image = self.bags.images[bag, 0].numpy()
        self.tiles_image.set_data(self._spread(image))
        top = float(weights.max())
        for i, frame in enumerate(self.frames):
            frame.set_edgecolor(_CMAP(0.15 + 0.8 * weights[i] / max(top, 1e-12)))
            frame.set_linewidth(0.8 + 5.0 * weights[i] / max(top, 1e-12))
        nodules = self.bags.nodules[bag].numpy()
        nodules = nodules[~np.isnan(nodules[:, 0])]
        points = [[self._to_spread(col), self._to_spread(row)] for row, col, _ in nodules]
        self.nodule_marks.set_offsets(np.array(points) if points else np.empty((0, 2)))
        self.nodule_marks.set_visible(bool(self.value("truth")))
        g = self.bags.grid
        self.grid_map.set(weights.reshape(g, g), list(range(g)), list(range(g)), vmin=0.0, vmax=max(top, 1e-6))
        show_truth = bool(self.value("truth"))
        for i, bar in enumerate(self.bars):
            bar.set_height(float(weights[i]))
            bar.set_facecolor("#d62728" if (truth[i] and show_truth) else "#9e9e9e")
        heaviest = int(weights.argmax())
        label = int(self.bags.bag_labels[bag])
        probability = float(probabilities[bag])
        self.bars_title.set_text(
            f"bag {bag}: {'positive' if label else 'negative'} ({int(truth.sum())} nodule tiles), "
            f"P(positive) = {probability:.2f}"
        )
        self.tiles_label.set_text(f"heaviest tile {heaviest}: weight {top:.2f}")
        hit = bool(truth[heaviest])
        self.state.update(
            bag=bag,
            pooling=pooling,
            weights=weights,
            probability=probability,
            bag_label=label,
            instance_labels=truth,
            heaviest=heaviest,
            hit=hit,
        )
        if label:
            verdict = "holds a nodule" if hit else "holds no nodule: the model looked elsewhere"
        else:
            verdict = "(a negative bag: the weights must sum to 1 anyway, so they go to the most suspicious tiles)"
        text = (
            f"{pooling}: the heaviest tile ({heaviest}, weight {top:.2f}) {verdict}. "
            f"Mean pooling would give every tile 1/{len(weights)} = {1 / len(weights):.3f}."
        )
        self.show_info(text)


@register(MILExplorer)
def mil_explorer(models: dict | None = None, bags: MILBags | None = None) -> MILExplorer:
    """The bags of attention-MIL with the weights each trained model gives their tiles.

    Args:
        models: name -> trained :class:`minattn.apps.mil.MILModel`; by default
            plain and gated attention trained here (about 2 s).
        bags: the bags to show; by default 48 held-out bags
            (:func:`minattn.apps.mil.make_bags` with seed 1).
    """
    return MILExplorer(models, bags)
