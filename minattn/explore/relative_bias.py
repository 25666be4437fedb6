"""Explorer 7: relative position bias, and what attention does without it.

The tokens are the patches of a window of a real CT slice. A
:class:`minattn.RelativePositionBias` holds one learnable number per relative
offset; here its table is filled with a structured example (a bias that
decays with distance, or one that favours the left neighbour) so the picture
means something, or left at its initialisation (std 0.02).

Panels: the bias table itself, one cell per offset ``(dh, dw)``; the bias a
picked query adds over its window (the table shifted to the query); the
window's patches as attention sees them (shuffled after "shuffle tokens");
and how much each output changed after shuffling, once the outputs are put
back in their original order.

Without the bias, attention is permutation-equivariant: shuffling the tokens
only shuffles the outputs the same way, so the change is zero. With the bias,
a token's position matters and the outputs change.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch

from ..attention import scaled_dot_product_attention
from ..patches import patchify, unpatchify
from ..position import RelativePositionBias, relative_position_index
from ._base import Explorer, ExplorerError
from .controls import set_slider_range
from .registry import register

__all__ = ["RelativeBiasExplorer", "relative_bias_explorer", "structured_table", "table_offsets"]


def table_offsets(window) -> torch.Tensor:
    """``(rows, 2)`` offset ``query - key`` that each row of a 2D bias table stands for.

    Read off :func:`minattn.relative_position_index`, so it agrees with the
    package's indexing by construction.
    """
    window = tuple(window)
    index = relative_position_index(window)  # (N, N)
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij"), -1).reshape(-1, len(window))
    offsets = torch.zeros(int(index.max()) + 1, len(window), dtype=torch.long)
    offsets[index.reshape(-1)] = (coords[:, None, :] - coords[None, :, :]).reshape(-1, len(window))
    return offsets


def structured_table(window, kind: str, strength: float) -> torch.Tensor:
    """A bias table ``((2Wh-1)(2Ww-1), 1)`` with a shape that means something.

    ``kind``: ``"distance"``: ``-strength * |offset|`` (near keys favoured);
    ``"left"``: ``+strength`` for the key just left of the query, fading with
    distance from that offset.
    """
    offsets = table_offsets(window).double()
    if kind == "distance":
        values = -strength * offsets.norm(dim=1)
    elif kind == "left":
        # query - key = (0, +1): the key one column to the left of the query
        values = strength * torch.exp(-((offsets - torch.tensor([0.0, 1.0])) ** 2).sum(1))
    else:
        raise ValueError(f"kind must be 'distance' or 'left'; received {kind!r}")
    return values[:, None]


class RelativeBiasExplorer(Explorer):
    title = "Relative position bias: a sense of place for a bag of tokens"
    description = (
        "Four panels: the relative position bias table (one cell per offset), the bias the chosen query adds over "
        "its window, the image patches (original or shuffled), and how much each output changes when the tokens "
        "are shuffled, with or without the bias."
    )

    def __init__(self, image: torch.Tensor | None = None):
        if image is None:
            from ..data import load_ct_slice

            image = load_ct_slice()
        if not isinstance(image, torch.Tensor) or image.ndim != 2:
            raise ValueError(f"image must be a 2D tensor (H, W); received {getattr(image, 'shape', type(image))}")
        self.ct = image.double()
        style = {"description_width": "initial"}
        narrow = widgets.Layout(width="230px")
        controls = {
            "kind": widgets.Dropdown(
                options=[
                    ("decays with distance", "distance"),
                    ("favours the left neighbour", "left"),
                    ("at initialisation (std 0.02)", "init"),
                ],
                value="distance",
                description="bias table",
                style=style,
            ),
            "strength": widgets.FloatSlider(
                value=1.5, min=0.0, max=5.0, step=0.1, description="strength", style=style, layout=narrow
            ),
            "use_bias": widgets.Checkbox(value=True, description="add the bias to the scores"),
            "window": widgets.IntSlider(
                value=6, min=2, max=10, description="window (tokens)", style=style, layout=narrow
            ),
            "patch": widgets.Dropdown(
                options=[4, 8, 16], value=8, description="patch (px)", style=style, layout=widgets.Layout(width="160px")
            ),
            "query_row": widgets.IntSlider(value=2, min=0, max=5, description="query row", style=style, layout=narrow),
            "query_col": widgets.IntSlider(value=3, min=0, max=5, description="query col", style=style, layout=narrow),
            "shuffle": widgets.Button(description="shuffle tokens", icon="random"),
            "unshuffle": widgets.Button(description="original order"),
        }
        self._generator = torch.Generator().manual_seed(0)
        self.permutation = None
        self._bias_modules: dict = {}
        super().__init__(
            controls,
            [["kind", "strength", "use_bias"], ["window", "patch", "query_row", "query_col"], ["shuffle", "unshuffle"]],
            figsize=(13, 3.6),
        )

    def follow(self, name: str, value) -> None:
        if name == "window":
            for axis in ("row", "col"):
                set_slider_range(self.controls[f"query_{axis}"], 0, value - 1)

    def _on_button(self, name: str) -> None:
        n = self.value("window") ** 2
        self.permutation = torch.randperm(n, generator=self._generator) if name == "shuffle" else None
        self.refresh()

    def build(self, figure) -> None:
        axes = figure.subplots(1, 4)
        figure.subplots_adjust(left=0.005, right=0.995, bottom=0.02, top=0.8, wspace=0.1)
        self.ax_table, self.ax_row, self.ax_tokens, self.ax_change = axes
        for ax in axes:
            ax.set_axis_off()
        self.table_image = self.dynamic(self.ax_table.imshow(np.zeros((2, 2)), cmap="RdBu_r", interpolation="nearest"))
        self.table_centre = self.dynamic(
            self.ax_table.scatter([], [], s=40, facecolors="none", edgecolors="black", marker="s")
        )
        self.row_image = self.dynamic(self.ax_row.imshow(np.zeros((2, 2)), cmap="RdBu_r", interpolation="nearest"))
        self.row_star = self.dynamic(
            self.ax_row.scatter([], [], s=110, c="gold", marker="*", edgecolors="black", linewidths=0.6)
        )
        self.tokens_image = self.dynamic(
            self.ax_tokens.imshow(np.zeros((2, 2)), cmap="gray", vmin=-250, vmax=450, interpolation="nearest")
        )
        self.change_image = self.dynamic(
            self.ax_change.imshow(np.zeros((2, 2)), cmap="magma", vmin=0, interpolation="nearest")
        )
        self.titles = [self.label(ax, fontsize=9) for ax in axes]

    def _bias_module(self, window: int) -> RelativePositionBias:
        if window not in self._bias_modules:
            with torch.random.fork_rng(devices=[]):  # a reproducible init table, leaving the caller's RNG alone
                torch.manual_seed(window)
                module = RelativePositionBias((window, window), num_heads=1).double()
            self._bias_modules[window] = (module, module.table.detach().clone())
        return self._bias_modules[window]

    def update(self) -> None:
        window, p = self.value("window"), self.value("patch")
        size = window * p
        if size > min(self.ct.shape):
            raise ExplorerError(
                f"a window of {window} x {window} patches of {p} px covers {size} px, more than the "
                f"{tuple(self.ct.shape)} image; choose a smaller window or patch"
            )
        n = window * window
        if self.permutation is not None and self.permutation.numel() != n:
            self.permutation = None  # the window changed: back to the original order
        perm = self.permutation if self.permutation is not None else torch.arange(n)
        inverse = torch.argsort(perm)

        # Tokens: the patches of a window at the centre of the slice, standardised.
        y0 = (self.ct.shape[0] - size) // 2
        x0 = (self.ct.shape[1] - size) // 2
        crop = self.ct[y0 : y0 + size, x0 : x0 + size]
        raw = patchify(crop[None, None], p)[0]  # (N, p*p), row-major over the window
        x = (raw - raw.mean()) / raw.std().clamp_min(1.0)

        module, initial = self._bias_module(window)
        kind, strength = self.value("kind"), float(self.value("strength"))
        with torch.no_grad():
            module.table.copy_(initial if kind == "init" else structured_table((window, window), kind, strength))
            bias = module()[0]  # (N, N): bias[i, j] added to the score of query slot i on key slot j
        use_bias = bool(self.value("use_bias"))

        def attend(tokens: torch.Tensor, with_bias: bool) -> torch.Tensor:
            return scaled_dot_product_attention(tokens, tokens, tokens, bias=bias if with_bias else None)

        shuffled = x[perm]  # token perm[i] now sits in slot i; the bias still belongs to the slots
        change = {}
        for with_bias in (False, True):
            original = attend(x, with_bias)
            after = attend(shuffled, with_bias)[inverse]  # back in the original order
            change[with_bias] = (after - original).norm(dim=1)  # (N,)
        shown = change[use_bias].reshape(window, window).numpy()

        table = module.table.detach()[:, 0].reshape(2 * window - 1, 2 * window - 1).numpy()
        bound = max(float(np.abs(table).max()), 1e-6)
        self.table_image.set_data(table)
        self.table_image.set_clim(-bound, bound)
        self.table_image.set_extent((-0.5, 2 * window - 1.5, 2 * window - 1.5, -0.5))
        self.ax_table.set_xlim(-0.5, 2 * window - 1.5)
        self.ax_table.set_ylim(2 * window - 1.5, -0.5)
        self.table_centre.set_offsets([[window - 1, window - 1]])

        q_row, q_col = min(self.value("query_row"), window - 1), min(self.value("query_col"), window - 1)
        query = q_row * window + q_col
        row = bias[query].reshape(window, window).numpy()
        self.row_image.set_data(row)
        self.row_image.set_clim(-bound, bound)
        for image, ax in ((self.row_image, self.ax_row), (self.change_image, self.ax_change)):
            image.set_extent((-0.5, window - 0.5, window - 0.5, -0.5))
            ax.set_xlim(-0.5, window - 0.5)
            ax.set_ylim(window - 0.5, -0.5)
        self.row_star.set_offsets([[q_col, q_row]])

        image = unpatchify(raw[perm][None], p, (window, window))  # the window as the shuffled tokens tile it
        self.tokens_image.set_data(image[0, 0].numpy())
        self.tokens_image.set_extent((0, size, size, 0))
        self.ax_tokens.set_xlim(0, size)
        self.ax_tokens.set_ylim(size, 0)
        self.change_image.set_data(shown)
        self.change_image.set_clim(0, max(float(change[True].max()), 1e-6))

        shuffled_now = self.permutation is not None
        max_plain, max_bias = float(change[False].max()), float(change[True].max())
        self.titles[0].set_text(
            f"bias table ({2 * window - 1} x {2 * window - 1})\none cell per offset (dh, dw); box = (0, 0)"
        )
        self.titles[1].set_text(f"bias added by query ({q_row}, {q_col})\nover its {window} x {window} window")
        self.titles[2].set_text(f"{'shuffled' if shuffled_now else 'original'} tokens\n({n} patches of {p} x {p} px)")
        largest = float(change[use_bias].max())
        self.titles[3].set_text(
            f"change of each output after shuffling\n{'with' if use_bias else 'without'} bias: max {largest:.2g}"
        )
        self.state.update(
            window=window,
            patch=p,
            kind=kind,
            strength=strength,
            use_bias=use_bias,
            table=table,
            bias_row=row,
            query=(q_row, q_col),
            permutation=perm.clone(),
            shuffled=shuffled_now,
            tokens=x,
            change_without_bias=change[False].numpy(),
            change_with_bias=change[True].numpy(),
            change_shown=shown,
        )
        if not shuffled_now:
            text = "Press 'shuffle tokens': the same patches, in a random order."
        else:
            text = (
                f"After shuffling, without the bias every output is the old output of the same token, only moved "
                f"(largest change {max_plain:.1e}: attention alone is permutation-equivariant). With the bias the "
                f"outputs change (largest change {max_bias:.2f}): the bias ties scores to positions."
            )
        self.show_info(text)


@register(RelativeBiasExplorer)
def relative_bias_explorer(image: torch.Tensor | None = None) -> RelativeBiasExplorer:
    """Relative position bias table, a query's bias over its window, and the shuffle test.

    Args:
        image: a 2D slice ``(H, W)`` in HU; defaults to :func:`minattn.data.load_ct_slice`.
    """
    return RelativeBiasExplorer(image)
