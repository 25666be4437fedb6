"""Explorer 12: kernel regression is attention, and its bandwidth is the softmax's temperature.

Nadaraya-Watson regression of a noisy, sparsely sampled intensity profile
through a real CT slice (:func:`minattn.apps.kernel_regression.ct_profile`),
computed as attention. A bandwidth slider sets the temperature (logits
``-||x - x_i||^2 / (2 h^2)``); a position slider picks one query and shows its
attention weights over the training samples. The right panel is the held-out
error against the bandwidth, with the current one marked.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch

from ..apps import hopfield as hf
from ..apps import kernel_regression as kr
from ._base import Explorer
from .registry import register

__all__ = ["KernelRegressionExplorer", "kernel_regression_explorer"]

_CURVE_BANDWIDTHS = np.geomspace(0.1, 30.0, 41)


class KernelRegressionExplorer(Explorer):
    title = "Kernel regression is attention: the bandwidth is the softmax temperature"
    description = (
        "Top left: noisy samples of a CT profile (blue dots), the full-dose reference (grey) and the kernel- "
        "regression fit (red), the query position dashed; below it the query's attention weight on each sample; "
        "right: the held-out error of the fit against the bandwidth h on a log axis, the best h dotted and the "
        "current one as a red dot."
    )

    def __init__(self, profile: kr.CTProfile | None = None):
        self.data = kr.ct_profile() if profile is None else profile
        style = {"description_width": "initial"}
        x_max = float(self.data.x[-1])
        controls = {
            "bandwidth": widgets.FloatLogSlider(
                value=1.5,
                base=10,
                min=-1,
                max=math.log10(30.0),
                step=0.02,
                description="bandwidth h (mm)",
                style=style,
                layout=widgets.Layout(width="380px"),
            ),
            "query": widgets.FloatSlider(
                value=round(0.3 * x_max, 1),
                min=0.0,
                max=round(x_max, 1),
                step=0.1,
                description="query x (mm)",
                style=style,
                layout=widgets.Layout(width="380px"),
            ),
        }
        d = self.data
        self.curve = kr.heldout_errors(_CURVE_BANDWIDTHS, d.x_train, d.y_train, d.x_val, d.y_val).numpy()
        self.best = kr.best_bandwidth(_CURVE_BANDWIDTHS, torch.from_numpy(self.curve))
        super().__init__(controls, [["bandwidth", "query"]], figsize=(12.5, 4.2))

    def build(self, figure) -> None:
        d = self.data
        grid = figure.add_gridspec(2, 2, width_ratios=(2.2, 1), height_ratios=(2.2, 1), hspace=0.08, wspace=0.22)
        figure.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.9)
        self.ax_fit = figure.add_subplot(grid[0, 0])
        self.ax_w = figure.add_subplot(grid[1, 0], sharex=self.ax_fit)
        self.ax_err = figure.add_subplot(grid[:, 1])
        x = d.x.numpy()
        self.ax_fit.plot(x, d.truth.numpy(), color="0.55", lw=1.2, label="reference (full-dose slice)")
        self.ax_fit.scatter(
            d.x_train.numpy(), d.y_train.numpy(), s=9, color="#1f77b4", label="noisy samples (keys, values)"
        )
        (self.fit_line,) = self.ax_fit.plot(x, x * 0, color="#d62728", lw=2, label="kernel regression")
        self.fit_line = self.dynamic(self.fit_line)
        self.query_line = self.dynamic(self.ax_fit.axvline(0, color="k", ls="--", lw=1))
        (self.query_dot,) = self.ax_fit.plot([0], [0], "o", color="k", ms=6)
        self.dynamic(self.query_dot)
        self.ax_fit.set_ylabel("HU")
        self.ax_fit.set_ylim(-1150, 1150)
        self.ax_fit.legend(loc="upper right", fontsize=8, ncol=3)
        self.ax_fit.tick_params(labelbottom=False)
        self.title_fit = self.label(self.ax_fit, fontsize=10)
        self.stems = self.dynamic(self.ax_w.vlines(d.x_train.numpy(), 0, 0, color="#ff7f0e", lw=2))
        self.query_line_w = self.dynamic(self.ax_w.axvline(0, color="k", ls="--", lw=1))
        self.ax_w.set_ylim(0, 1.05)
        self.ax_w.set_xlim(x[0] - 1, x[-1] + 1)
        self.ax_w.set_xlabel("position along the line (mm)")
        self.ax_w.set_ylabel("weight / max")
        self.title_w = self.label(self.ax_w, x=0.01, y=0.95, ha="left", va="top", fontsize=9)
        self.ax_err.plot(_CURVE_BANDWIDTHS, self.curve, color="0.3")
        self.ax_err.axvline(self.best, color="#2ca02c", ls=":", lw=1.5)
        self.ax_err.set_xscale("log")
        self.ax_err.set_xlabel("bandwidth h (mm)")
        self.ax_err.set_ylabel("held-out RMSE vs reference (HU)")
        self.ax_err.set_title(f"best h = {self.best:.2g} mm (dotted)", fontsize=10)
        (self.err_dot,) = self.ax_err.plot([1], [1], "o", color="#d62728", ms=8)
        self.dynamic(self.err_dot)

    def update(self) -> None:
        d = self.data
        h = float(self.value("bandwidth"))
        xq = float(self.value("query"))
        fit = kr.nadaraya_watson_attention(d.x, d.x_train, d.y_train, h)
        query = torch.tensor([xq], dtype=d.x.dtype)
        pred, weights = kr.nadaraya_watson_attention(query, d.x_train, d.y_train, h, return_weights=True)
        w = weights[0].numpy()
        val = kr.nadaraya_watson_attention(d.x_val, d.x_train, d.y_train, h)
        rmse = float(((val - d.y_val) ** 2).mean().sqrt())
        effective = float(hf.effective_number(weights[0]))
        self.fit_line.set_ydata(fit.numpy())
        self.query_line.set_xdata([xq, xq])
        self.query_line_w.set_xdata([xq, xq])
        self.query_dot.set_data([xq], [float(pred[0])])
        self.stems.set_segments([[(x, 0), (x, v)] for x, v in zip(d.x_train.numpy(), w / w.max())])
        self.err_dot.set_data([h], [rmse])
        temperature = 2 * h * h
        self.title_fit.set_text(
            f"h = {h:.3g} mm: logits -dist^2 / {temperature:.3g} mm^2; "
            f"prediction at {xq:.1f} mm = {float(pred[0]):.0f} HU"
        )
        self.title_w.set_text(
            f"query's attention weights: max {w.max():.3f}, about {effective:.1f} samples effectively averaged"
        )
        if h < 0.5 * self.best:
            regime = "under-smoothing: each prediction copies the nearest noisy sample"
        elif h > 2.5 * self.best:
            regime = "over-smoothing: the bone edges are washed out"
        else:
            regime = "near the best bandwidth"
        self.state.update(
            bandwidth=h,
            temperature=temperature,
            query=xq,
            prediction=float(pred[0]),
            weights=w,
            fit=fit.numpy(),
            rmse=rmse,
            best_bandwidth=self.best,
            effective_samples=effective,
            regime=regime,
        )
        text = (
            f"held-out RMSE {rmse:.0f} HU at h = {h:.3g} mm "
            f"(best {self.curve.min():.0f} HU at h = {self.best:.2g} mm): {regime}."
        )
        self.show_info(text)


@register(KernelRegressionExplorer)
def kernel_regression_explorer(profile: kr.CTProfile | None = None) -> KernelRegressionExplorer:
    """Nadaraya-Watson regression as attention with a bandwidth slider.

    Args:
        profile: a :class:`minattn.apps.kernel_regression.CTProfile`; defaults to ``ct_profile()``.
    """
    return KernelRegressionExplorer(profile)
