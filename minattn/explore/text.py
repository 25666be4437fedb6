"""Labels that change on every update of an explorer, drawn from glyph images rendered once.

A matplotlib ``Text`` lays out and rasterises its whole string on every draw:
about 5 ms per label on a busy 2-core machine, so the 48 numbers of a heatmap
took over 200 ms per update, far more than everything else an update does.
:class:`Label` and :class:`NumberLayer` draw instead from glyph images that
matplotlib renders once per (character, size) with its public API (a
``Figure.text`` on its own Agg canvas), placed side by side at their advances
and drawn with ``RendererBase.draw_image``, as an image artist is. What they
leave out: kerning and mathtext; they are for titles and numbers.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

__all__ = ["Label", "NumberLayer"]

_MARGIN = 4  # pixels left of the pen, for glyphs that reach left of it ("j")


class Glyph(NamedTuple):
    """One character as matplotlib draws it: ``alpha`` rows share a baseline for every character of a size."""

    alpha: np.ndarray  # (rows, cols) uint8 coverage
    offset: int  # column of alpha's left edge relative to the pen position (<= 0)
    advance: float  # pixels the pen moves after this character
    baseline: int  # row of the baseline, counted from the top


@functools.cache
def glyph(char: str, fontsize: float, dpi: float) -> Glyph:
    """Render ``char`` once with ``Figure.text`` on a transparent Agg canvas and keep its coverage."""
    rows = int(fontsize * dpi / 72 * 2) + 8
    cols = 2 * rows + _MARGIN
    baseline = rows * 3 // 4
    figure = Figure(figsize=(cols / dpi, rows / dpi), dpi=dpi, facecolor="none")
    canvas = FigureCanvasAgg(figure)
    at = (_MARGIN / cols, 1 - baseline / rows)
    # The advance: how much wider two of the character are than one (what the layout gives, without ink).
    twice = figure.text(*at, char * 2, fontsize=fontsize, va="baseline")
    double = twice.get_window_extent(canvas.get_renderer()).width
    twice.remove()
    once = figure.text(*at, char, fontsize=fontsize, va="baseline", color="black")
    single = once.get_window_extent(canvas.get_renderer()).width
    canvas.draw()
    alpha = np.asarray(canvas.buffer_rgba())[..., 3]
    ink = np.nonzero(alpha.any(0))[0]
    if not len(ink):  # a space
        return Glyph(np.zeros((rows, 1), np.uint8), 0, max(0.0, double - single), baseline)
    left = min(int(ink[0]), _MARGIN)
    return Glyph(alpha[:, left : int(ink[-1]) + 1].copy(), left - _MARGIN, max(0.0, double - single), baseline)


def _line_alpha(line: str, fontsize: float, dpi: float) -> np.ndarray:
    """Coverage of one line of text, all glyph rows: glyphs placed side by side at their advances."""
    glyphs = [glyph(c, fontsize, dpi) for c in line] or [glyph(" ", fontsize, dpi)]
    pen, starts = -min(0, glyphs[0].offset), []
    for g in glyphs:
        starts.append(round(pen) + g.offset)
        pen += g.advance
    width = max([s + g.alpha.shape[1] for s, g in zip(starts, glyphs)] + [int(np.ceil(pen)), 1])
    out = np.zeros((glyphs[0].alpha.shape[0], width), np.uint8)
    for s, g in zip(starts, glyphs):
        region = out[:, max(s, 0) : s + g.alpha.shape[1]]
        np.maximum(region, g.alpha[:, g.alpha.shape[1] - region.shape[1] :], out=region)
    return out


@functools.lru_cache(maxsize=8192)
def text_sprite(
    text: str, colour: str, fontsize: float, dpi: float, crop: str = "line", ha: str = "center"
) -> np.ndarray:
    """RGBA pixels ``(rows, cols, 4)`` of a label, rows bottom-up as ``RendererBase.draw_image`` takes them.

    ``crop="digits"`` cuts the rows to the ink of the digits, so numbers centre
    on their digits; ``"line"`` keeps ascenders and descenders. Lines are
    separated by newlines and aligned by ``ha`` (left, center, right).
    """
    px = fontsize * dpi / 72
    zero = glyph("0", fontsize, dpi)
    if crop == "digits":
        ink = np.nonzero(zero.alpha.any(1))[0]
        top, bottom = int(ink[0]), int(ink[-1]) + 1
    else:
        top, bottom = max(0, zero.baseline - int(np.ceil(px * 0.95))), zero.baseline + int(np.ceil(px * 0.3))
    lines = [_line_alpha(line, fontsize, dpi)[top:bottom] for line in text.split("\n")]
    width = max(line.shape[1] for line in lines)
    gap = max(1, round(px * 0.25))
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
    """Draw a sprite anchored at display point ``(px, py)`` (pixels from the bottom left)."""
    h, w = sprite.shape[:2]
    left = {"left": px, "right": px - w}.get(ha, px - w / 2)
    bottom = {"bottom": py, "top": py - h}.get(va, py - h / 2)
    gc = renderer.new_gc()
    renderer.draw_image(gc, round(left), round(bottom), sprite)
    gc.restore()


class Label(Artist):
    """A text label for text that changes on every update (see the module's docstring).

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
        sprite = text_sprite(self._text, self.colour, self.fontsize, renderer.dpi, "line", self.ha)
        _stamp(renderer, sprite, px, py, self.ha, self.va)


class NumberLayer(Artist):
    """Many short labels centred on data points, in one artist (see :class:`Label`).

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
            sprite = text_sprite(text, colour, self.fontsize, renderer.dpi, "digits")
            _stamp(renderer, sprite, px, py, "center", "center")
