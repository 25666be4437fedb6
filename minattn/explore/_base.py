"""What every explorer shares: controls, a message line, a figure updated in place.

An explorer is an ``ipywidgets.VBox``: a title, rows of controls, a message
line (empty unless a value is bad), the figure, and an info line. The figure
is a plain ``matplotlib.figure.Figure`` on an Agg canvas, made once with all
its artists. A control change recomputes the explorer's state, updates those
artists (``set_data``, ``set_text``, ...), redraws the one figure and puts the
PNG into an ``ipywidgets.Image``, which the browser swaps in place.

Rendering this way does not depend on the notebook's matplotlib backend
(inline, widget or none at all): the explorer never goes through pyplot, so a
figure is never displayed twice or left open, and tests run headlessly.

Each explorer exposes
    ``controls``: dict name -> widget, to drive it from code or tests,
    ``state``: dict of what is currently shown (arrays, texts, ``error``),
    ``last_update_s``: seconds the last update took (compute + draw + PNG).
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import re
import time
from typing import Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from PIL import Image

__all__ = ["Explorer", "ExplorerError", "Heatmap", "Label", "NumberLayer", "set_slider_range"]

_ERROR_STYLE = "color:#8a1010;background:#fdecea;border:1px solid #e0a8a8;border-radius:3px;padding:3px 8px"
_NOTE_STYLE = "color:#6b4e00;background:#fff6dc;border:1px solid #e6cf8b;border-radius:3px;padding:3px 8px"


class ExplorerError(ValueError):
    """A value the learner chose that the explorer cannot show; its message is shown in the widget."""


def _enter_single_thread() -> int:
    """Run torch on one thread; return the previous count to restore.

    An explorer's tensors are tiny: one thread is faster than waking a thread
    pool, which on a busy 2-core machine was measured to cost ~30 ms per
    matmul (the second thread waits for a core). The caller restores the count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


class Explorer(widgets.VBox):
    """Base class. Subclasses implement ``build(figure)`` (make axes and artists once) and ``update()``.

    ``update()`` reads ``self.controls``, fills ``self.state`` and changes the
    artists; it raises :class:`ExplorerError` (or any ``ValueError`` from the
    package) for a bad combination of values, whose message is then shown
    instead of a traceback. The next good value clears it.
    """

    title = ""

    def __init__(self, controls: dict, rows: list[list[str]], figsize=(10, 3.5), dpi: int = 72):
        super().__init__()
        self.controls = dict(controls)
        self.state: dict = {"error": None, "note": ""}
        self.last_update_s = 0.0
        self.update_count = 0
        self.full_draws = 0  # updates that had to redraw the whole figure, not just the dynamic artists
        self._hold_depth = 0
        self._pending = False
        self._following = False  # True while follow() moves other controls
        self.message = widgets.HTML(value="")
        self.info = widgets.HTML(value="")
        self.figure = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self._dynamic: list = []  # artists redrawn on every update (the rest is a cached background)
        self._background = None
        width = int(figsize[0] * dpi)
        # Named `picture`, not `image`: subclasses commonly call their imshow artist `image`.
        self.picture = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px", max_width="100%"))
        title = widgets.HTML(f"<b>{html.escape(self.title)}</b>") if self.title else widgets.HTML("")
        boxes = [widgets.HBox([self.controls[name] for name in row]) for row in rows]
        self.children = [title, *boxes, self.message, self.picture, self.info]
        # CSS classes name the explorer in the page, so a browser test can find each one.
        self.add_class("minattn-explorer")
        self.add_class(f"minattn-explorer-{self.dom_name()}")
        threads = _enter_single_thread()
        try:
            self.build(self.figure)
        finally:
            torch.set_num_threads(threads)
        for name, control in self.controls.items():
            if isinstance(control, widgets.Button):
                control.on_click(lambda _button, name=name: self._on_button(name))
            else:
                control.observe(self._on_change, names="value")
        self.refresh()

    @classmethod
    def dom_name(cls) -> str:
        """The explorer's name in CSS: ``CostExplorer`` -> ``cost``, ``MILExplorer`` -> ``mil``."""
        words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*", cls.__name__.removesuffix("Explorer"))
        return "-".join(word.lower() for word in words) or "explorer"

    # -- to implement --------------------------------------------------------
    def build(self, figure: Figure) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- machinery -------------------------------------------------------------
    def value(self, name: str):
        """Current value of control ``name``."""
        return self.controls[name].value

    @contextlib.contextmanager
    def hold(self):
        """Change several controls at once with one update at the end (not one per change)."""
        self._hold_depth += 1
        try:
            yield
        finally:
            self._hold_depth -= 1
            if self._hold_depth == 0 and self._pending:
                self._pending = False
                self.refresh()

    def follow(self, name: str, value) -> None:
        """Move other controls after control ``name`` changed to ``value`` (a preset fills in its
        values, a grid size bounds a token slider, ...). Does nothing unless a subclass overrides it.
        """

    def _on_change(self, change) -> None:
        # The changes follow() makes land here too: they neither follow again nor redraw,
        # and the explorer redraws once, when the learner's change has been followed.
        if self._following:
            return
        name = next(key for key, control in self.controls.items() if control is change["owner"])
        self._following = True
        try:
            with self.hold():
                self.follow(name, change["new"])
                self._pending = True
        finally:
            self._following = False

    def _on_button(self, _name: str) -> None:
        self.refresh()

    def click(self, name: str) -> None:
        """Press button ``name`` (as a learner would; for tests and scripts)."""
        self.controls[name].click()

    def refresh(self) -> None:
        """Recompute, update the artists and redraw; show a message instead of raising on bad values."""
        if self._hold_depth:
            self._pending = True
            return
        start = time.perf_counter()
        self.state["note"] = ""
        threads = _enter_single_thread()
        try:
            self.update()
            self._render()
        except (ValueError, MemoryError) as exc:  # the package's input checks raise ValueError
            self._show_error(str(exc))
        except Exception as exc:  # a bug: say so in the widget rather than in a log nobody sees
            self._show_error(f"unexpected {type(exc).__name__}: {exc}")
        else:
            self.state["error"] = None
            note = self.state.get("note") or ""
            self.message.value = f"<div style='{_NOTE_STYLE}'>{html.escape(note)}</div>" if note else ""
        finally:
            torch.set_num_threads(threads)
        self.update_count += 1
        self.last_update_s = time.perf_counter() - start

    def _show_error(self, text: str) -> None:
        self.state["error"] = text
        self.message.value = f"<div style='{_ERROR_STYLE}'>&#9888; {html.escape(text)}</div>"

    def dynamic(self, *artists):
        """Mark artists that change between updates; returns the first.

        Only these are redrawn on an update, over a cached picture of the rest
        (axes, ticks, labels): matplotlib's blitting, done on the Agg canvas.
        """
        for artist in artists:
            artist.set_animated(True)
            self._dynamic.append(artist)
        return artists[0] if artists else None

    def label(
        self,
        ax,
        x: float = 0.5,
        y: float = 1.02,
        text: str = "",
        ha: str = "center",
        va: str = "bottom",
        fontsize: float = 10,
        colour: str = "black",
        coords: str = "axes",
    ) -> "Label":
        """A fast, dynamic :class:`Label` in ``ax`` (axes coordinates by default; ``coords="data"`` for data)."""
        label = Label(x, y, text, ha, va, fontsize, colour)
        label.set_transform(ax.transAxes if coords == "axes" else ax.transData)
        ax.add_artist(label)
        return self.dynamic(label)

    def invalidate(self) -> None:
        """Something static changed (limits, ticks, labels): redraw everything on the next update."""
        self._background = None

    def _render(self) -> None:
        if self._background is None:
            self.full_draws += 1
            self.canvas.draw()  # draws everything but the dynamic artists
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        else:
            self.canvas.restore_region(self._background)
        renderer = self.canvas.get_renderer()
        for artist in self._dynamic:
            if artist.get_visible():
                artist.draw(renderer)
        rgba = np.asarray(self.canvas.buffer_rgba())
        buffer = io.BytesIO()
        # Fast PNG settings: an update is about latency, not file size.
        Image.fromarray(rgba[..., :3]).save(buffer, format="png", compress_level=1)
        self.picture.value = buffer.getvalue()

    def png(self) -> bytes:
        """The PNG currently shown (the value of the Image widget among the explorer's children)."""
        return bytes(self.picture.value)


# Fast text ------------------------------------------------------------------------------------
# A matplotlib Text lays out and rasterises every glyph on every draw: 1-5 ms per label on a busy
# 2-core machine, the largest cost of an update. Labels that change on every update are composed
# instead from glyph bitmaps that Agg renders once per (character, size).


@functools.lru_cache(maxsize=None)
def _glyph(char: str, fontsize: float, dpi: float):
    """One character rendered once by Agg: ``(alpha (rows, cols) uint8, advance in px, baseline row)``.

    Every character of a size shares the same rows and baseline, so text is
    composed by placing glyphs side by side at their advances (no kerning).
    """
    prop = FontProperties(size=fontsize)
    probe = RendererAgg(8, 8, dpi)
    single = probe.get_text_width_height_descent(char, prop, ismath=False)[0]
    double = probe.get_text_width_height_descent(char * 2, prop, ismath=False)[0]
    advance = max(0.0, double - single)
    rows = int(fontsize * dpi / 72 * 2) + 8
    baseline = rows * 3 // 4
    renderer = RendererAgg(int(single) + 12, rows, dpi)
    gc = renderer.new_gc()
    gc.set_foreground("black")
    renderer.draw_text(gc, 0, baseline, char, prop, 0)
    gc.restore()
    alpha = np.asarray(renderer.buffer_rgba())[..., 3]
    ink_cols = np.nonzero(alpha.any(0))[0]
    alpha = alpha[:, : int(ink_cols[-1]) + 1].copy() if len(ink_cols) else np.zeros((rows, 1), np.uint8)
    return alpha, advance, baseline


def _line_alpha(line: str, fontsize: float, dpi: float) -> np.ndarray:
    """Alpha of one line of text, all glyph rows, composed from cached glyphs."""
    glyphs = [_glyph(c, fontsize, dpi) for c in line] or [_glyph(" ", fontsize, dpi)]
    pen, positions = 0.0, []
    for _, advance, _ in glyphs:
        positions.append(int(round(pen)))
        pen += advance
    width = max([p + g[0].shape[1] for p, g in zip(positions, glyphs)] + [int(np.ceil(pen)), 1])
    out = np.zeros((glyphs[0][0].shape[0], width), np.uint8)
    for p, (alpha, _, _) in zip(positions, glyphs):
        region = out[:, p : p + alpha.shape[1]]
        np.maximum(region, alpha[:, : region.shape[1]], out=region)
    return out


@functools.lru_cache(maxsize=8192)
def _text_sprite(
    text: str, colour: str, fontsize: float, dpi: float, crop: str = "line", ha: str = "center"
) -> np.ndarray:
    """RGBA pixels of a label, rows bottom-up as ``Renderer.draw_image`` wants them.

    ``crop="digits"`` cuts the rows to the ink of the digits, so numbers centre
    on their digits; ``"line"`` keeps ascenders and descenders. Lines are
    separated by newlines and aligned by ``ha``.
    """
    px = fontsize * dpi / 72
    zero, _, baseline = _glyph("0", fontsize, dpi)
    if crop == "digits":
        ink = np.nonzero(zero.any(1))[0]
        top, bottom = int(ink[0]), int(ink[-1]) + 1
    else:
        top, bottom = max(0, baseline - int(np.ceil(px * 0.95))), baseline + int(np.ceil(px * 0.3))
    lines = [_line_alpha(line, fontsize, dpi)[top:bottom] for line in text.split("\n")]
    width = max(line.shape[1] for line in lines)
    gap = max(1, int(round(px * 0.25)))
    height = sum(line.shape[0] for line in lines) + gap * (len(lines) - 1)
    alpha = np.zeros((height, width), np.uint8)
    y = 0
    for line in lines:
        x = {"left": 0, "right": width - line.shape[1]}.get(ha, (width - line.shape[1]) // 2)
        alpha[y : y + line.shape[0], x : x + line.shape[1]] = line
        y += line.shape[0] + gap
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = (np.array(to_rgba(colour)[:3]) * 255).round().astype(np.uint8)
    rgba[..., 3] = alpha
    return np.ascontiguousarray(rgba[::-1])


def _stamp(renderer, sprite: np.ndarray, px: float, py: float, ha: str, va: str) -> None:
    """Draw a sprite anchored at display point ``(px, py)``."""
    h, w = sprite.shape[:2]
    left = {"left": px, "right": px - w}.get(ha, px - w / 2)
    bottom = {"bottom": py, "top": py - h}.get(va, py - h / 2)
    gc = renderer.new_gc()
    renderer.draw_image(gc, round(left), round(bottom), sprite)
    gc.restore()


class Label(Artist):
    """A text label drawn from cached glyph bitmaps, for text that changes on every update.

    ``x, y`` are in the artist's transform (axes coordinates when made by
    :meth:`Explorer.label`); ``ha`` is left/center/right, ``va`` bottom/center/top.
    """

    def __init__(
        self,
        x: float,
        y: float,
        text: str = "",
        ha: str = "center",
        va: str = "bottom",
        fontsize: float = 10,
        colour: str = "black",
    ):
        super().__init__()
        self.x, self.y, self.ha, self.va, self.fontsize, self.colour = x, y, ha, va, fontsize, colour
        self._text = text

    def set_text(self, text: str) -> None:
        self._text = str(text)
        self.stale = True

    def get_text(self) -> str:
        return self._text

    def set_position(self, xy) -> None:
        self.x, self.y = xy
        self.stale = True

    def draw(self, renderer) -> None:
        if not self.get_visible() or not self._text:
            return
        px, py = self.get_transform().transform((self.x, self.y))
        _stamp(
            renderer,
            _text_sprite(self._text, self.colour, self.fontsize, renderer.dpi, "line", self.ha),
            px,
            py,
            self.ha,
            self.va,
        )


class NumberLayer(Artist):
    """Many short labels centred on data points, drawn from cached glyphs (see :class:`Label`).

    ``items`` is a list of ``(x, y, text, colour)`` in data coordinates.
    """

    def __init__(self, fontsize: float = 9):
        super().__init__()
        self.fontsize = fontsize
        self.items: list = []

    def set_items(self, items) -> None:
        self.items = list(items)
        self.stale = True

    def texts(self) -> list[str]:
        return [item[2] for item in self.items]

    def draw(self, renderer) -> None:
        if not self.get_visible() or not self.items:
            return
        points = self.axes.transData.transform([(x, y) for x, y, _, _ in self.items])
        for (px, py), (_, _, text, colour) in zip(points, self.items):
            _stamp(
                renderer, _text_sprite(text, colour, self.fontsize, renderer.dpi, "digits"), px, py, "center", "center"
            )


class Heatmap:
    """An ``imshow`` with one number per cell, resized and refilled in place.

    Args:
        explorer: the explorer whose figure holds it (its artists are made dynamic).
        ax: the axes to draw in.
        max_cells: numbers are written only up to this many cells.
        cmap: colormap name.
        fmt: formats each number.
        fontsize: of the numbers.
    """

    def __init__(
        self,
        explorer: Explorer,
        ax,
        max_cells: int = 64,
        cmap: str = "viridis",
        fmt: Callable = "{:.2f}".format,
        fontsize=9,
    ):
        self.explorer = explorer
        self.ax = ax
        self.fmt = fmt
        self.max_cells = max_cells
        self.shape = None
        self.labels = None
        self.image = ax.imshow(np.zeros((1, 1)), cmap=cmap, interpolation="nearest", aspect="auto")
        self.numbers = NumberLayer(fontsize)
        ax.add_artist(self.numbers)
        explorer.dynamic(self.image, self.numbers)

    def set(self, matrix, row_labels, col_labels, vmin=None, vmax=None, numbers: bool = True) -> None:
        matrix = np.asarray(matrix, dtype=float)
        n, m = matrix.shape
        vmin = float(np.nanmin(matrix)) if vmin is None else vmin
        vmax = float(np.nanmax(matrix)) if vmax is None else vmax
        if vmax <= vmin:
            vmax = vmin + 1e-9
        self.image.set_data(matrix)
        self.image.set_clim(vmin, vmax)
        if self.shape != (n, m):
            self.shape = (n, m)
            self.image.set_extent((-0.5, m - 0.5, n - 0.5, -0.5))
            self.ax.set_xlim(-0.5, m - 0.5)
            self.ax.set_ylim(n - 0.5, -0.5)
            self.explorer.invalidate()
        labels = (tuple(row_labels), tuple(col_labels))
        if self.labels != labels:
            self.labels = labels
            self.ax.set_xticks(range(m), col_labels)
            self.ax.set_yticks(range(n), row_labels)
            self.explorer.invalidate()
        if not numbers or n * m > self.max_cells:
            self.numbers.set_items([])
            return
        colours = self.image.cmap(Normalize(vmin, vmax)(matrix))
        dark = colours[..., :3] @ np.array([0.299, 0.587, 0.114]) < 0.5
        self.numbers.set_items(
            (j, i, self.fmt(matrix[i, j]), "white" if dark[i, j] else "black") for i in range(n) for j in range(m)
        )


def set_slider_range(slider: widgets.IntSlider, low: int, high: int) -> None:
    """Change a slider's range, clamping its value, without going through an invalid state."""
    if high < slider.min:
        slider.min = low
        slider.max = high
    else:
        slider.max = high
        slider.min = low
    slider.value = min(max(slider.value, low), high)
