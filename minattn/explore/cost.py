"""Explorer 3: what global and windowed attention cost.

Volume shape, patch size, window, dtype, heads and a memory limit go in;
tokens, score entries, the bytes of the score matrices and the FLOPs of
``QK^T`` and ``AV`` come out, for global attention and for window attention,
with whether each fits in the memory given. Every number comes from
:mod:`minattn.cost`; the presets are the course's examples.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import torch

from ..cost import attention_flops, attention_matrix_bytes, attention_scores, num_tokens, windowed_attention_scores
from ..windows import effective_window_and_shift
from ._base import Explorer
from .registry import register

__all__ = ["PRESETS", "CostExplorer", "cost_explorer", "format_bytes", "format_count"]

GIB = 2**30
PRESETS = {
    "seed_feature_map": {
        "D": 32,
        "H": 64,
        "W": 64,
        "patch": 1,
        "window": 8,
        "dtype": "float32",
        "heads": 1,
        "head_dim": 32,
    },
    "seed_windows": {
        "D": 128,
        "H": 128,
        "W": 128,
        "patch": 1,
        "window": 8,
        "dtype": "float32",
        "heads": 1,
        "head_dim": 32,
    },
    "seed_ct": {"D": 96, "H": 256, "W": 256, "patch": 8, "window": 8, "dtype": "float32", "heads": 1, "head_dim": 32},
}
_PRESET_NAMES = [
    ("example: 32x64x64 feature map -> 131,072 tokens, 64 GiB", "seed_feature_map"),
    ("example: 128^3 tokens, 8^3 windows -> 4096x fewer scores", "seed_windows"),
    ("seed: 256x256x96 CT, 8^3 patches -> 12,288 tokens", "seed_ct"),
    ("custom", "custom"),
]
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
_BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
_FLOP_UNITS = ["", "k", "M", "G", "T", "P", "E", "Z"]


def format_bytes(n: float) -> str:
    """``68719476736`` -> ``'64 GiB'`` (binary units, 3 significant digits)."""
    unit = 0
    while n >= 1024 and unit < len(_BYTE_UNITS) - 1:
        n /= 1024
        unit += 1
    return f"{n:.3g} {_BYTE_UNITS[unit]}"


def format_count(n: float, suffix: str = "") -> str:
    """``2.2e12`` -> ``'2.2 T'`` (decimal units)."""
    unit = 0
    while n >= 1000 and unit < len(_FLOP_UNITS) - 1:
        n /= 1000
        unit += 1
    return f"{n:.3g} {_FLOP_UNITS[unit]}{suffix}".strip()


class CostExplorer(Explorer):
    title = "The N^2 bottleneck: global vs windowed attention"
    description = (
        "Two bar charts on logarithmic axes, global attention beside windowed attention: the memory of the score "
        "matrices, with the chosen memory limit as a dashed red line, and the FLOPs of Q K^T and A V for one "
        "layer. A table of the same figures follows."
    )

    def __init__(self):
        style = {"description_width": "initial"}
        small = widgets.Layout(width="150px")
        ints = lambda name, value, high: widgets.BoundedIntText(
            value=value, min=1, max=high, description=name, layout=small, style=style
        )
        preset = PRESETS["seed_feature_map"]
        controls = {
            "preset": widgets.Dropdown(
                options=_PRESET_NAMES,
                value="seed_feature_map",
                description="preset",
                layout=widgets.Layout(width="460px"),
            ),
            "D": ints("D", preset["D"], 4096),
            "H": ints("H", preset["H"], 4096),
            "W": ints("W", preset["W"], 4096),
            "patch": ints("patch", preset["patch"], 512),
            "window": ints("window", preset["window"], 512),
            "dtype": widgets.Dropdown(
                options=list(_DTYPES), value=preset["dtype"], description="dtype", layout=widgets.Layout(width="190px")
            ),
            "heads": ints("heads", preset["heads"], 256),
            "head_dim": ints("head dim", preset["head_dim"], 4096),
            "memory_gib": widgets.BoundedFloatText(
                value=16.0,
                min=0.001,
                max=1e6,
                description="memory (GiB)",
                layout=widgets.Layout(width="190px"),
                style=style,
            ),
        }
        super().__init__(
            controls,
            [["preset", "memory_gib", "dtype"], ["D", "H", "W", "patch", "window", "heads", "head_dim"]],
            figsize=(10, 3.4),
        )

    def follow(self, name: str, value) -> None:
        if name == "preset":
            for control, preset_value in PRESETS.get(value, {}).items():
                self.controls[control].value = preset_value
        elif name != "memory_gib" and self.value("preset") != "custom":
            self.controls["preset"].value = "custom"

    def build(self, figure) -> None:
        self.ax_mem, self.ax_flops = figure.subplots(1, 2)
        figure.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.86, wspace=0.3)
        colours = ["#888888", "#888888"]
        # Fixed log axes: the background (ticks, labels) never changes, only bars and texts.
        for ax, (low, high), units, title in (
            (self.ax_mem, (2.0**10, 2.0**60), _BYTE_UNITS, "memory of the score matrices"),
            (self.ax_flops, (1e3, 1e21), _FLOP_UNITS, "FLOPs of QK^T and AV (one layer)"),
        ):
            ax.set_yscale("log")
            ax.set_ylim(low, high * 8)
            ax.set_xlim(-0.6, 1.6)
            ax.set_xticks([0, 1], ["global", "windowed"])
            if ax is self.ax_mem:
                ticks = [2.0 ** (10 * i) for i in range(1, 7)]
                ax.set_yticks(ticks, [f"1 {u}" for u in _BYTE_UNITS[1:7]])
            else:
                ticks = [10.0 ** (3 * i) for i in range(1, 8)]
                ax.set_yticks(ticks, [f"1 {u}FLOP" for u in _FLOP_UNITS[1:8]])
            ax.minorticks_off()
            ax.tick_params(labelsize=8)
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        self.mem_bars = self.ax_mem.bar([0, 1], [1, 1], color=colours, width=0.6)
        self.flop_bars = self.ax_flops.bar([0, 1], [1, 1], color=colours, width=0.6)
        self.dynamic(*self.mem_bars, *self.flop_bars)
        self.limit_line = self.dynamic(self.ax_mem.axhline(float(GIB), color="#c00000", lw=1.2, ls="--"))
        self.limit_text = self.label(
            self.ax_mem, 1.55, float(GIB), fontsize=8, colour="#c00000", ha="right", coords="data"
        )
        self.bar_texts = [
            self.label(ax, x, 1.0, fontsize=8, coords="data") for ax in (self.ax_mem, self.ax_flops) for x in (0, 1)
        ]

    def update(self) -> None:
        shape = (self.value("D"), self.value("H"), self.value("W"))
        patch, window = self.value("patch"), self.value("window")
        dtype = _DTYPES[self.value("dtype")]
        heads, head_dim = self.value("heads"), self.value("head_dim")
        limit = float(self.value("memory_gib")) * GIB

        n = num_tokens(shape, patch)  # raises with a message when the patch does not divide the shape
        grid = tuple(s // patch for s in shape)
        scores = attention_scores(n)
        memory = attention_matrix_bytes(n, dtype, heads=heads)
        flops = attention_flops(n, head_dim, heads=heads)

        # Swin's rule: along an axis the grid does not exceed, the window shrinks to the grid.
        win, _ = effective_window_and_shift(grid, window, 0)
        notes = []
        if win != (window,) * 3:
            notes.append(
                f"the window {window} is larger than the token grid {grid} along some axis: "
                f"Swin shrinks it there, so window {win} is used"
            )
        per_window = math.prod(win)
        w_scores = windowed_attention_scores(grid, win)  # pads the grid up to whole windows
        n_windows = w_scores // attention_scores(per_window)
        padded = n_windows * per_window
        if padded != n:
            notes.append(f"the grid {grid} is padded to whole windows: {padded - n:,} padding tokens join the {n:,}")
        w_memory = attention_matrix_bytes(per_window, dtype, heads=heads, batch=n_windows)
        w_flops = n_windows * attention_flops(per_window, head_dim, heads=heads)
        fits, w_fits = memory <= limit, w_memory <= limit
        self.state["note"] = "; ".join(notes)

        for bars, values in ((self.mem_bars, (memory, w_memory)), (self.flop_bars, (flops, w_flops))):
            for bar, value in zip(bars, values):
                bar.set_height(float(max(value, 1)))
        for bar, ok in zip(self.mem_bars, (fits, w_fits)):
            bar.set_color("#2e8b57" if ok else "#d04040")
        for bar in self.flop_bars:
            bar.set_color("#5080c0")
        labels = (
            format_bytes(memory),
            format_bytes(w_memory),
            format_count(flops, "FLOP"),
            format_count(w_flops, "FLOP"),
        )
        for text, bar, label in zip(self.bar_texts, (*self.mem_bars, *self.flop_bars), labels):
            text.set_text(label)
            text.set_position((text.x, bar.get_height() * 1.3))
        self.limit_line.set_ydata([limit, limit])
        self.limit_text.set_text(f"limit {format_bytes(limit)}")
        self.limit_text.set_position((1.55, limit * 1.15))

        self.state.update(
            shape=shape,
            grid=grid,
            tokens=n,
            scores=scores,
            memory_bytes=memory,
            flops=flops,
            fits=fits,
            window=win,
            num_windows=n_windows,
            tokens_per_window=per_window,
            windowed_scores=w_scores,
            windowed_memory_bytes=w_memory,
            windowed_flops=w_flops,
            windowed_fits=w_fits,
            reduction=scores / w_scores,
            limit_bytes=limit,
        )
        yes = "<span style='color:#2e8b57'>fits</span>"
        no = "<span style='color:#d04040'>does not fit</span>"
        rows = [
            ("tokens", f"{n:,} (grid {grid[0]}x{grid[1]}x{grid[2]})", f"{n_windows:,} windows x {per_window:,} tokens"),
            ("score entries", f"{scores:,} (N^2)", f"{w_scores:,} ({scores / w_scores:,.0f}x fewer)"),
            (
                f"memory ({self.value('dtype')}, {heads} head{'s' if heads > 1 else ''})",
                f"{format_bytes(memory)}: {yes if fits else no}",
                f"{format_bytes(w_memory)}: {yes if w_fits else no}",
            ),
            (f"FLOPs (head dim {head_dim})", format_count(flops, "FLOP"), format_count(w_flops, "FLOP")),
        ]
        cells = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
        table = (
            "<table style='font-size:12px;border-collapse:collapse' cellpadding='3'>"
            "<tr><th></th><th style='text-align:left'>global attention</th>"
            f"<th style='text-align:left'>windowed ({win[0]}x{win[1]}x{win[2]})</th></tr>{cells}</table>"
        )
        self.show_info(table)


@register(CostExplorer)
def cost_explorer() -> CostExplorer:
    """Tokens, scores, memory and FLOPs of global vs windowed attention, against a memory limit."""
    return CostExplorer()
