"""Explorer 6: a council of specialist heads looking at one window of a real CT slice.

The tokens are the patches of a real 128 x 128 CT slice (the one pydicom
ships, :func:`minattn.data.load_ct_slice`), cut with :func:`minattn.patchify`
and grouped into windows with :func:`minattn.window_partition`. A
:class:`minattn.MultiHeadAttention` with four heads attends inside the window.

Its projections are set by hand, not learned, so that each head is a
recognisable specialist: its queries and keys read one block of features.

- intensity: a soft histogram code of the patch's mean HU (attends to the same tissue),
- texture: a code of the patch's HU spread (smooth vs edge or noise),
- position: a code of the token's place in the window (attends to neighbours),
- untrained: a random projection of the raw patch, as a head starts before training.

A temperature per head divides that head's scores (it scales the head's block
of query weights): low T gives a sharp head that picks a few exact matches,
high T a soft head that averages broadly, the course's sharp and soft
specialists. Each panel shows where the picked query token looks.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.patches import Rectangle

from ..multihead import MultiHeadAttention
from ..patches import patchify
from ..windows import window_partition
from ._base import Explorer, ExplorerError
from .controls import set_slider_range
from .registry import register

__all__ = ["HEADS", "HeadsExplorer", "heads_explorer", "token_features"]

HEADS = ("intensity", "texture", "position", "untrained")
HEAD_DIM = 16
_GAIN = 6.0  # a perfect match scores 6 (at T = 1): weights range over about e^6 = 400x
_PRESETS = {
    "council": (0.25, 4.0, 1.0, 1.0),
    "all_one": (1.0, 1.0, 1.0, 1.0),
    "all_sharp": (0.2, 0.2, 0.2, 0.2),
    "all_soft": (5.0, 5.0, 5.0, 5.0),
}


def _soft_bins(values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Gaussian soft histogram code, unit norm: ``(N,)`` -> ``(N, len(centres))``."""
    width = float(centres[1] - centres[0])
    code = torch.exp(-0.5 * ((values[:, None] - centres[None, :]) / width) ** 2)
    return code / code.norm(dim=1, keepdim=True).clamp_min(1e-12)


def token_features(patches: torch.Tensor, window: int, seed: int = 0) -> torch.Tensor:
    """Hand-made features for the four specialist heads.

    Args:
        patches: ``(N, p*p)`` one window's patches in HU, row-major over the window.
        window: tokens per side of the window (``N = window^2``).

    Returns:
        ``(N, 4 * HEAD_DIM)``: four unit-norm blocks, one per head in :data:`HEADS` order.
    """
    mean, spread = patches.mean(1), patches.std(1) if patches.shape[1] > 1 else torch.zeros(patches.shape[0])
    intensity = _soft_bins(mean, torch.linspace(-1000.0, 1400.0, HEAD_DIM))
    texture = _soft_bins(torch.log10(spread + 1.0), torch.linspace(0.0, 3.0, HEAD_DIM))
    side = math.isqrt(HEAD_DIM)
    rows = torch.arange(window).repeat_interleave(window).double()
    cols = torch.arange(window).repeat(window).double()
    grid = torch.linspace(0, window - 1, side, dtype=torch.float64)
    cy, cx = torch.meshgrid(grid, grid, indexing="ij")
    sigma = max(1.0, (window - 1) / side)
    position = torch.exp(
        -((rows[:, None] - cy.reshape(1, -1)) ** 2 + (cols[:, None] - cx.reshape(1, -1)) ** 2) / (2 * sigma**2)
    )
    position = position / position.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    raw = (patches - patches.mean()) / patches.std().clamp_min(1.0)
    untrained = raw.double() @ torch.randn(patches.shape[1], HEAD_DIM, generator=g, dtype=torch.float64)
    untrained = untrained / untrained.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([intensity.double(), texture.double(), position, untrained], dim=1)


class HeadsExplorer(Explorer):
    title = "Multi-head attention: a council of specialists (per-head temperature)"
    description = (
        "A CT slice with the chosen window outlined in orange, then one panel per attention head: that window, "
        "with the query starred and the head's attention weight on each token in red, titled with the head's "
        "temperature, largest weight and entropy."
    )

    def __init__(self, image: torch.Tensor | None = None):
        if image is None:
            from ..data import load_ct_slice

            image = load_ct_slice()
        if not isinstance(image, torch.Tensor) or image.ndim != 2:
            raise ValueError(f"image must be a 2D tensor (H, W) in HU; received {getattr(image, 'shape', type(image))}")
        self.ct = image.double()
        self.attention = MultiHeadAttention(len(HEADS) * HEAD_DIM, len(HEADS)).double()
        style = {"description_width": "initial"}
        narrow = widgets.Layout(width="230px")
        temps = {
            f"T_{name}": widgets.FloatLogSlider(
                value=t, base=10, min=-1.3, max=1.3, step=0.05, description=f"T {name}", style=style, layout=narrow
            )
            for name, t in zip(HEADS, _PRESETS["council"])
        }
        controls = {
            "preset": widgets.Dropdown(
                options=[
                    ("sharp intensity, soft texture", "council"),
                    ("every T = 1", "all_one"),
                    ("all sharp (T = 0.2)", "all_sharp"),
                    ("all soft (T = 5)", "all_soft"),
                ],
                value="council",
                description="temperatures",
                style=style,
            ),
            "patch": widgets.Dropdown(options=[2, 4, 8], value=4, description="patch (px)", style=style, layout=narrow),
            # Only windows that tile the token grid: every position of the slider is a valid partition.
            "window": widgets.SelectionSlider(
                options=self._window_options(4),
                value=8,
                description="window (tokens)",
                style=style,
                layout=widgets.Layout(width="300px"),
            ),
            "window_row": widgets.IntSlider(
                value=1, min=0, max=3, description="window row", style=style, layout=narrow
            ),
            "window_col": widgets.IntSlider(
                value=1, min=0, max=3, description="window col", style=style, layout=narrow
            ),
            "query_row": widgets.IntSlider(value=4, min=0, max=7, description="query row", style=style, layout=narrow),
            "query_col": widgets.IntSlider(value=4, min=0, max=7, description="query col", style=style, layout=narrow),
            **temps,
        }
        self._key = None
        super().__init__(
            controls,
            [["preset", "patch", "window"], ["window_row", "window_col", "query_row", "query_col"], list(temps)],
            figsize=(13, 3.6),
        )

    def follow(self, name: str, value) -> None:
        if name == "preset":
            for head, t in zip(HEADS, _PRESETS[value]):
                self.controls[f"T_{head}"].value = t
        if name in ("patch", "window"):
            self._sync_ranges()

    def _window_options(self, patch: int) -> list[int]:
        """Window sides from 2 to 16 tokens that divide the token grid of this patch size."""
        rows, cols = self.ct.shape[0] // patch, self.ct.shape[1] // patch
        return [w for w in range(2, 17) if rows % w == 0 and cols % w == 0] or [1]

    def _sync_ranges(self) -> None:
        tokens = self.ct.shape[0] // self.value("patch")
        slider, options = self.controls["window"], self._window_options(self.value("patch"))
        if list(slider.options) != options:
            keep = min(options, key=lambda w: abs(w - slider.value))
            slider.options = options
            slider.value = keep
        window = self.value("window")
        if tokens % window or window > tokens:
            return  # update() explains
        for axis in ("row", "col"):
            set_slider_range(self.controls[f"window_{axis}"], 0, tokens // window - 1)
            set_slider_range(self.controls[f"query_{axis}"], 0, window - 1)

    def build(self, figure) -> None:
        axes = figure.subplots(1, 1 + len(HEADS))
        figure.subplots_adjust(left=0.005, right=0.995, bottom=0.02, top=0.8, wspace=0.06)
        self.ax_ct, self.head_axes = axes[0], axes[1:]
        for ax in axes:
            ax.set_axis_off()
        self.ct_image = self.ax_ct.imshow(np.clip(self.ct.numpy(), -250, 450), cmap="gray", interpolation="nearest")
        self.ax_ct.set_title("CT slice (pydicom CT_small), HU", fontsize=9)
        self.window_box = self.dynamic(self.ax_ct.add_patch(Rectangle((0, 0), 1, 1, fill=False, ec="#ffb000", lw=1.5)))
        self.query_dot = self.dynamic(self.ax_ct.scatter([], [], s=25, c="red", marker="s"))
        self.crops, self.overlays, self.stars, self.titles = [], [], [], []
        for ax in self.head_axes:
            self.crops.append(
                self.dynamic(ax.imshow(np.zeros((2, 2)), cmap="gray", vmin=-250, vmax=450, interpolation="nearest"))
            )
            self.overlays.append(self.dynamic(ax.imshow(np.zeros((2, 2, 4)), interpolation="nearest")))
            self.stars.append(
                self.dynamic(ax.scatter([], [], s=90, c="cyan", marker="*", edgecolors="black", linewidths=0.6))
            )
            self.titles.append(self.label(ax, fontsize=9))

    def _window_tokens(self):
        p, window = self.value("patch"), self.value("window")
        key = (p, window)
        if key != self._key:
            tokens = patchify(self.ct[None, None], p)[0]  # (N, p*p): the slice's patches, row-major
            side = self.ct.shape[0] // p
            grid = tokens.reshape(1, side, self.ct.shape[1] // p, p * p)  # channels-last token grid (B, H, W, C)
            self._windows = window_partition(grid, window)  # (nW, window^2, p*p); raises if window does not divide
            self._side = (side, self.ct.shape[1] // p)
            self._key = key
        return self._windows

    def update(self) -> None:
        p, window = self.value("patch"), self.value("window")
        tokens_per_side = self.ct.shape[0] // p
        if window > tokens_per_side:
            raise ExplorerError(f"window {window} is larger than the {tokens_per_side} x {tokens_per_side} token grid")
        windows = self._window_tokens()
        per_row = self._side[1] // window
        w_row = min(self.value("window_row"), self._side[0] // window - 1)
        w_col = min(self.value("window_col"), per_row - 1)
        q_row, q_col = min(self.value("query_row"), window - 1), min(self.value("query_col"), window - 1)
        patches = windows[w_row * per_row + w_col]  # (N, p*p)
        features = token_features(patches, window)
        temperatures = [float(self.value(f"T_{name}")) for name in HEADS]

        # Configure the real module: q, k, v read each head's own feature block; the temperature
        # of a head scales its block of query weights, so its scores are divided by T.
        dim = len(HEADS) * HEAD_DIM
        eye = torch.eye(dim, dtype=torch.float64)
        gains = torch.tensor([_GAIN * math.sqrt(HEAD_DIM) / t for t in temperatures], dtype=torch.float64)
        with torch.no_grad():
            self.attention.in_proj_weight.copy_(torch.cat([eye * gains.repeat_interleave(HEAD_DIM)[:, None], eye, eye]))
            self.attention.in_proj_bias.zero_()
        with torch.no_grad():
            _, weights = self.attention(features[None], return_weights=True)  # (1, heads, N, N)
        query = q_row * window + q_col
        maps = weights[0, :, query].reshape(len(HEADS), window, window).numpy()

        y0, x0 = w_row * window * p, w_col * window * p
        size = window * p
        crop = self.ct[y0 : y0 + size, x0 : x0 + size].numpy()
        self.window_box.set_bounds(x0 - 0.5, y0 - 0.5, size, size)
        self.query_dot.set_offsets([[x0 + (q_col + 0.5) * p - 0.5, y0 + (q_row + 0.5) * p - 0.5]])
        summaries = []
        for h, (name, ax) in enumerate(zip(HEADS, self.head_axes)):
            self.crops[h].set_data(crop)
            self.crops[h].set_extent((0, window, window, 0))
            ax.set_xlim(0, window)
            ax.set_ylim(window, 0)
            w = maps[h]
            overlay = np.zeros((window, window, 4))
            overlay[..., 0], overlay[..., 1] = 1.0, 0.15
            overlay[..., 3] = 0.85 * w / w.max()
            self.overlays[h].set_data(overlay)
            self.overlays[h].set_extent((0, window, window, 0))
            self.stars[h].set_offsets([[q_col + 0.5, q_row + 0.5]])
            entropy = float(-(w * np.log2(np.clip(w, 1e-12, None))).sum())
            summaries.append(
                {"head": name, "temperature": temperatures[h], "entropy_bits": entropy, "max_weight": float(w.max())}
            )
            self.titles[h].set_text(
                f"head {h + 1}: {name}, T = {temperatures[h]:.2g}\n"
                f"max weight {w.max():.2f}, entropy {entropy:.1f} of {math.log2(window * window):.0f} bits"
            )

        self.state.update(
            patch=p,
            window=window,
            window_index=(w_row, w_col),
            query=(q_row, q_col),
            temperatures=temperatures,
            weights=maps,
            all_weights=weights[0].numpy(),
            features=features,
            heads=summaries,
        )
        spread = "; ".join(f"{s['head']} ~{2 ** s['entropy_bits']:.0f}" for s in summaries)
        text = (
            f"query token ({q_row}, {q_col}) of window ({w_row}, {w_col}); red = attention weight of the query on each "
            f"token of its window. Tokens each head effectively looks at (2^entropy): {spread} of {window * window}."
        )
        self.show_info(text)


@register(HeadsExplorer)
def heads_explorer(image: torch.Tensor | None = None) -> HeadsExplorer:
    """Per-head attention maps of one window of a real CT slice, with a temperature per head.

    Args:
        image: a 2D slice ``(H, W)`` in HU; defaults to :func:`minattn.data.load_ct_slice`.
    """
    return HeadsExplorer(image)
