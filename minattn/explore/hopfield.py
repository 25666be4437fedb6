"""Explorer 13: attention as a modern Hopfield network; beta, the inverse temperature, picks a memory.

A modern Hopfield network storing the 16 x 16 patches of a real CT slice
(:func:`minattn.apps.hopfield.ct_patterns`). Pick a patch, corrupt it (noise
or a masked lower part) and retrieve it at an inverse temperature ``beta``:
large beta lands on one stored patch in a step or two, small beta on an
average of many (a metastable state).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from ..apps import hopfield as hf
from ._base import Explorer, ExplorerError
from .registry import register

__all__ = ["HopfieldExplorer", "hopfield_explorer"]


class HopfieldExplorer(Explorer):
    title = "Attention as a modern Hopfield network: beta decides between one memory and an average"
    description = (
        "Four image patches in a row (the stored patch, the corrupted query, the state after one update, the "
        "settled state, each with its overlap with the stored patch), then the Boltzmann weight of every stored "
        "patch at the settled state, the true patch marked in red."
    )

    def __init__(self, patch: int = 16):
        self.patch = patch
        self.patterns = hf.ct_patterns(patch)  # (N, p*p), unit norm
        n = self.patterns.shape[0]
        style = {"description_width": "initial"}
        narrow = widgets.Layout(width="300px")
        controls = {
            "beta": widgets.FloatLogSlider(
                value=32.0,
                base=10,
                min=-0.3,
                max=2.7,
                step=0.02,
                description="inverse temperature beta",
                style=style,
                layout=widgets.Layout(width="420px"),
            ),
            "pattern": widgets.IntSlider(
                value=21, min=0, max=n - 1, description="stored patch", style=style, layout=narrow
            ),
            "corruption": widgets.Dropdown(
                options=[("noise", "noise"), ("masked lower part", "mask")],
                value="noise",
                description="corruption",
                style=style,
                layout=widgets.Layout(width="250px"),
            ),
            "level": widgets.FloatSlider(
                value=0.8,
                min=0.0,
                max=2.0,
                step=0.05,
                description="noise / masked fraction",
                style=style,
                layout=narrow,
            ),
        }
        self.limit = float(self.patterns.abs().quantile(0.99))
        super().__init__(controls, [["beta"], ["pattern", "corruption", "level"]], figsize=(13, 3.6))

    def build(self, figure) -> None:
        grid = figure.add_gridspec(1, 5, width_ratios=(1, 1, 1, 1, 2.4), wspace=0.15)
        figure.subplots_adjust(left=0.01, right=0.985, bottom=0.16, top=0.8)
        self.images, self.titles = [], []
        zero = np.zeros((self.patch, self.patch))
        names = ["stored patch", "query (corrupted)", "after 1 update", "settled state"]
        for i, name in enumerate(names):
            ax = figure.add_subplot(grid[0, i])
            ax.set_axis_off()
            ax.set_title(name, fontsize=10, pad=18)
            self.images.append(
                self.dynamic(ax.imshow(zero, cmap="gray", vmin=-self.limit, vmax=self.limit, interpolation="nearest"))
            )
            self.titles.append(self.label(ax, y=1.01, fontsize=9))
        self.ax_w = figure.add_subplot(grid[0, 4])
        n = self.patterns.shape[0]
        self.bars = self.dynamic(self.ax_w.vlines(np.arange(n), 0, 0, color="#1f77b4", lw=3))
        (self.target_dot,) = self.ax_w.plot([0], [1.02], "v", color="#d62728", ms=7)
        self.dynamic(self.target_dot)
        self.ax_w.set_xlim(-1, n)
        self.ax_w.set_ylim(0, 1.08)
        self.ax_w.set_xlabel("stored patch i (row-major over the slice)")
        self.ax_w.set_ylabel("Boltzmann weight p_i")
        self.ax_w.set_title("softmax(beta x_i . state) at the settled state; red = the true patch", fontsize=10)
        self.w_text = self.label(self.ax_w, x=0.98, y=0.9, ha="right", va="top", fontsize=9)

    def update(self) -> None:
        beta = float(self.value("beta"))
        index = int(self.value("pattern"))
        kind, level = self.value("corruption"), float(self.value("level"))
        if kind == "mask" and level > 1.0:
            raise ExplorerError(f"a masked fraction must lie in [0, 1]; received {level:.2f}")
        target = self.patterns[index : index + 1]
        query = hf.corrupt(target, kind, level, seed=index)
        one = hf.hopfield_update(query, self.patterns, beta)
        r = hf.retrieve(query, self.patterns, beta, max_steps=100)
        final, weights = r.state[0], r.weights[0]
        closest = int((final @ self.patterns.T).argmax())
        overlaps = [float(hf.overlap(v, target[0])) for v in (target[0], query[0], one[0], final)]
        p = self.patch
        for image, vector in zip(self.images, (target[0], query[0], one[0], final)):
            image.set_data(vector.reshape(p, p).numpy())
        for label, ov in zip(self.titles, overlaps):
            label.set_text(f"overlap {ov:.2f}")
        effective = float(hf.effective_number(weights))
        steps = int(r.steps[0])
        settled = bool(r.converged[0])
        self.bars.set_segments([[(i, 0), (i, float(w))] for i, w in enumerate(weights.numpy())])
        self.target_dot.set_data([index], [1.03])
        self.w_text.set_text(f"about {effective:.1f} patches averaged\nclosest stored patch: {closest}")
        energy = r.energies[:, 0]
        self.state.update(
            beta=beta,
            pattern=index,
            corruption=kind,
            level=level,
            query=query[0],
            one_step=one[0],
            state=final,
            weights=weights.numpy(),
            overlaps=overlaps,
            effective_patterns=effective,
            steps=steps,
            converged=settled,
            closest=closest,
            retrieved=closest == index and overlaps[3] > 0.9,
            energies=energy.numpy(),
        )
        outcome = (
            "retrieved the stored patch"
            if self.state["retrieved"]
            else f"settled on a mixture of about {effective:.0f} patches"
            if effective > 1.5
            else f"settled on another patch ({closest})"
        )
        steps_text = f"{steps} update(s)" if settled else f"not settled after {steps} updates"
        text = (
            f"beta = {beta:.3g}: {outcome}; {steps_text}; energy {float(energy[0]):.3f} -> {float(energy[-1]):.3f}. "
            f"In a transformer beta = 1/sqrt(d_k) on unnormalised vectors; for unit-variance patches "
            f"of {self.patch}x{self.patch} numbers that is beta = {self.patch} on this unit-norm scale."
        )
        self.show_info(text)


@register(HopfieldExplorer)
def hopfield_explorer(patch: int = 16) -> HopfieldExplorer:
    """Retrieve a corrupted CT patch from a modern Hopfield network with an inverse-temperature slider.

    Args:
        patch: side of the stored square patches, dividing 128 (8 or 16).
    """
    return HopfieldExplorer(patch)
