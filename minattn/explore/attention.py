"""Explorer 1: queries, keys, scores, softmax weights and outputs.

Pick the course's worked example (two queries, three keys: q1 = k1, q2 = k2 and
k3 equally similar to both), type your own Q, K and V, or draw random vectors
of growing dimension d_k. Three heatmaps show the score matrix, the softmax
weights and the outputs with their numbers; a fourth panel shows how the
largest weight of a random row grows with d_k, with and without dividing the
scores by sqrt(d_k). A temperature divides the scores on top.

Everything is computed by :func:`minattn.scaled_dot_product_attention` with
``scale = 1 / (sqrt(d_k) * T)`` (or ``1 / T`` unscaled).
"""

from __future__ import annotations

import math
import re

import ipywidgets as widgets
import numpy as np
import torch

from ..attention import scaled_dot_product_attention
from ._base import Explorer, ExplorerError, Heatmap
from .registry import register

__all__ = ["SEED_EXAMPLE", "AttentionExplorer", "attention_explorer", "parse_matrix"]

# The course's example: q1 = k1, q2 = k2; k3 has the same dot product with both
# queries as their own keys do, so each query splits its weight between its own
# value and v3. One-hot values make each output row read as "how much of v1, v2, v3".
SEED_EXAMPLE = {
    "queries": "2 0; 0 2",
    "keys": "2 0; 0 2; 2 2",
    "values": "1 0 0; 0 1 0; 0 0 1",
}
MAX_QUERIES, MAX_KEYS, MAX_VALUE_DIM = 6, 8, 8
_RANDOM_SHAPE = (3, 5, 3)  # queries, keys, value features for random vectors
_MAX_DK = 512
_CURVE_DK = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def parse_matrix(text: str, name: str) -> torch.Tensor:
    """``"1 0; 0 1"`` -> float tensor ``(rows, cols)``; rows split by ``;`` or newlines, numbers by spaces or commas."""
    rows = [r for r in re.split(r"[;\n]", text) if r.strip()]
    if not rows:
        raise ExplorerError(f"{name}: type at least one row, e.g. '1 0; 0 1'")
    try:
        values = [[float(v) for v in re.split(r"[,\s]+", r.strip())] for r in rows]
    except ValueError:
        raise ExplorerError(f"{name}: could not read numbers from {text!r}; write rows like '1 0; 0 1'") from None
    lengths = {len(r) for r in values}
    if len(lengths) != 1:
        raise ExplorerError(
            f"{name}: every row needs the same number of entries; received rows of lengths {sorted(lengths)}"
        )
    return torch.tensor(values, dtype=torch.float64)


def _format_matrix(m: torch.Tensor) -> str:
    return "; ".join(" ".join(f"{v:g}" for v in row) for row in m.tolist())


class AttentionExplorer(Explorer):
    title = "Scaled dot-product attention: scores -> softmax -> weighted values"
    description = (
        "Four panels: the score matrix Q K^T (scaled or not), the softmax weights whose rows sum to 1, the "
        "outputs weights @ V, and a curve of the largest weight in a row against d_k with and without the "
        "1/sqrt(d_k) scaling, a diamond marking the current Q and K."
    )

    def __init__(self):
        text = {
            "layout": widgets.Layout(width="290px"),
            "continuous_update": False,
            "style": {"description_width": "initial"},
        }
        controls = {
            "preset": widgets.Dropdown(
                options=[
                    ("worked example: q1 = k1, q2 = k2, k3 shared", "seed"),
                    ("random vectors (d_k slider)", "random"),
                    ("custom (edit Q, K, V)", "custom"),
                ],
                value="seed",
                description="vectors",
            ),
            "queries": widgets.Text(value=SEED_EXAMPLE["queries"], description="Q (rows)", **text),
            "keys": widgets.Text(value=SEED_EXAMPLE["keys"], description="K (rows)", **text),
            "values": widgets.Text(value=SEED_EXAMPLE["values"], description="V (rows)", **text),
            "d_k": widgets.IntSlider(value=2, min=1, max=_MAX_DK, description="d_k (random)", continuous_update=True),
            "scaled": widgets.Checkbox(value=True, description="divide by sqrt(d_k)"),
            "temperature": widgets.FloatLogSlider(
                value=1.0, base=10, min=-1, max=1, step=0.05, description="temperature T"
            ),
        }
        # Fixed random draws, so that d_k grows by adding dimensions to the same vectors.
        g = torch.Generator().manual_seed(0)
        nq, nk, dv = _RANDOM_SHAPE
        self._random = (
            torch.randn(nq, _MAX_DK, generator=g, dtype=torch.float64),
            torch.randn(nk, _MAX_DK, generator=g, dtype=torch.float64),
            torch.randn(nk, dv, generator=g, dtype=torch.float64),
        )
        super().__init__(
            controls, [["preset", "d_k", "scaled", "temperature"], ["queries", "keys", "values"]], figsize=(13, 3.3)
        )

    # The preset and the d_k slider rewrite other controls: do it in one update.
    def follow(self, name: str, value) -> None:
        if name == "preset" and value == "seed":
            for vectors in ("queries", "keys", "values"):
                self.controls[vectors].value = SEED_EXAMPLE[vectors]
            self.controls["d_k"].value = 2
        elif name == "d_k" and self.value("preset") != "random":
            self.controls["preset"].value = "random"
        elif name in ("queries", "keys", "values") and self.value("preset") != "custom":
            self.controls["preset"].value = "custom"

    def build(self, figure) -> None:
        axes = figure.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
        figure.subplots_adjust(left=0.04, right=0.99, bottom=0.17, top=0.82, wspace=0.35)
        self.ax_scores, self.ax_weights, self.ax_out, self.ax_curve = axes
        self.scores_map = Heatmap(
            self, self.ax_scores, MAX_QUERIES * MAX_KEYS, cmap="coolwarm", fmt="{:.2f}".format, fontsize=8
        )
        self.weights_map = Heatmap(
            self, self.ax_weights, MAX_QUERIES * MAX_KEYS, cmap="viridis", fmt="{:.2f}".format, fontsize=8
        )
        self.out_map = Heatmap(
            self, self.ax_out, MAX_QUERIES * MAX_VALUE_DIM, cmap="viridis", fmt="{:.2f}".format, fontsize=8
        )
        self.title_scores = self.label(self.ax_scores, fontsize=10)
        self.ax_weights.set_title("weights = softmax(scores), rows sum to 1", fontsize=10)
        self.ax_out.set_title("outputs = weights @ V", fontsize=10)
        self.ax_out.set_xlabel("value feature", fontsize=9)
        # Saturation curves: mean largest weight per row of random (3 x 5) attention, vs d_k.
        dks = np.array(_CURVE_DK)
        g = torch.Generator().manual_seed(1)
        q = torch.randn(200, 3, _MAX_DK, generator=g, dtype=torch.float64)
        k = torch.randn(200, 5, _MAX_DK, generator=g, dtype=torch.float64)
        v = torch.zeros(200, 5, 1, dtype=torch.float64)
        curves = {}
        for scaled in (False, True):
            peaks = []
            for d in _CURVE_DK:
                scale = 1 / math.sqrt(d) if scaled else 1.0
                _, w = scaled_dot_product_attention(q[..., :d], k[..., :d], v, scale=scale, return_weights=True)
                peaks.append(float(w.amax(-1).mean()))
            curves[scaled] = np.array(peaks)
        self.curves = curves
        ax = self.ax_curve
        ax.plot(dks, curves[False], "-o", ms=3, color="tab:red", label="q.k (unscaled)")
        ax.plot(dks, curves[True], "-o", ms=3, color="tab:blue", label="q.k / sqrt(d_k)")
        ax.axhline(1 / 5, color="grey", lw=0.8, ls=":")
        ax.text(1.1, 1 / 5 + 0.02, "uniform (1/5)", fontsize=8, color="grey")
        (self.marker,) = ax.plot([2], [0.5], "D", color="black", ms=7, label="current Q, K")
        self.dynamic(self.marker)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("d_k (random q, k ~ N(0, 1))", fontsize=9)
        ax.set_title("largest weight in a row (5 keys)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.tick_params(labelsize=8)

    def _vectors(self):
        mode = self.value("preset")
        if mode == "random":
            d = self.value("d_k")
            q, k, v = self._random
            return q[:, :d], k[:, :d], v
        q = parse_matrix(self.value("queries"), "Q")
        k = parse_matrix(self.value("keys"), "K")
        v = parse_matrix(self.value("values"), "V")
        if q.shape[0] > MAX_QUERIES or k.shape[0] > MAX_KEYS or v.shape[1] > MAX_VALUE_DIM:
            raise ExplorerError(
                f"at most {MAX_QUERIES} queries, {MAX_KEYS} keys and {MAX_VALUE_DIM} value features fit the display; "
                f"received {q.shape[0]}, {k.shape[0]} and {v.shape[1]}"
            )
        return q, k, v

    def update(self) -> None:
        q, k, v = self._vectors()
        d_k = q.shape[-1]
        temperature = float(self.value("temperature"))
        scaled = bool(self.value("scaled"))
        scale = (1 / math.sqrt(d_k) if scaled else 1.0) / temperature
        # The package checks that the shapes fit (d_k of Q and K, keys of K and V) and says what is wrong.
        out, weights = scaled_dot_product_attention(q, k, v, scale=scale, return_weights=True)
        scores = (q @ k.T) * scale  # what the softmax receives (the function's own first step)

        qs = [f"q{i + 1}" for i in range(q.shape[0])]
        ks = [f"k{j + 1}" for j in range(k.shape[0])]
        bound = float(scores.abs().max()) or 1.0
        show_numbers = True
        self.scores_map.set(scores.numpy(), qs, ks, vmin=-bound, vmax=bound, numbers=show_numbers)
        self.weights_map.set(weights.numpy(), qs, ks, vmin=0.0, vmax=1.0)
        self.out_map.set(out.numpy(), qs, [f"{j + 1}" for j in range(v.shape[1])])
        divisor = f"sqrt({d_k})" if scaled else "1"
        self.title_scores.set_text(f"scores = q.k / ({divisor} x T={temperature:.2g})")
        peak = float(weights.amax(-1).mean())
        self.marker.set_data([d_k], [peak])

        self.state.update(
            mode=self.value("preset"),
            q=q,
            k=k,
            v=v,
            d_k=d_k,
            scale=scale,
            temperature=temperature,
            scores=scores.numpy(),
            weights=weights.numpy(),
            output=out.numpy(),
            mean_peak_weight=peak,
        )
        if self.value("preset") == "random":
            text = (
                f"d_k = {d_k}: raw q.k has standard deviation about sqrt(d_k) = {math.sqrt(d_k):.1f}; "
                f"the scores shown have std {float(scores.std()):.2f}; mean largest weight per row {peak:.2f}."
            )
        else:
            blends = []
            for i in range(q.shape[0]):
                parts = " + ".join(f"{w:.2f} v{j + 1}" for j, w in enumerate(weights[i].tolist()))
                blends.append(f"out{i + 1} = {parts}")
            text = "; ".join(blends)
        self.show_info(text, monospace=True)


@register(AttentionExplorer)
def attention_explorer() -> AttentionExplorer:
    """Interactive scores / softmax / outputs for small Q, K, V. Returns a widget to display."""
    return AttentionExplorer()
