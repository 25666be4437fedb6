"""The explorers' fast labels: drawn from glyphs matplotlib renders once, they must look like matplotlib's text."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minattn.explore.text import Label, NumberLayer, glyph, text_sprite

DPI = 72.0


def ink_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the nonzero pixels, rows counted from the top."""
    rows, cols = np.nonzero(alpha > 40)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def best_correlation(a: np.ndarray, b: np.ndarray, reach: int = 1) -> float:
    """Largest correlation of two coverage images over shifts of up to ``reach`` pixels each way."""
    a, b = a.astype(float), b.astype(float)
    best = -1.0
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = np.roll(a, (dy, dx), axis=(0, 1))
            best = max(best, float(np.corrcoef(shifted.ravel(), b.ravel())[0, 1]))
    return best


def drawn(artist_maker, size=(240, 60)) -> np.ndarray:
    """Alpha of a transparent figure after drawing what ``artist_maker(figure, ax)`` adds (rows from the top)."""
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, facecolor="none")
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, size[0])
    ax.set_ylim(0, size[1])
    artist_maker(figure, ax)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., 3].copy()


@pytest.mark.parametrize("text", ["h = 1.53 mm: logits", "q1 k3 0.49 (Wj)", "-0.07"])
def test_a_label_covers_the_same_pixels_as_matplotlib_text(text):
    ours = drawn(
        lambda fig, ax: ax.add_artist(Label(120, 30, text, "center", "center", 10)).set_transform(ax.transData)
    )
    theirs = drawn(lambda fig, ax: ax.text(120, 30, text, ha="center", va="center", fontsize=10))
    (t1, b1, l1, r1), (t2, b2, l2, r2) = ink_box(ours), ink_box(theirs)
    assert abs((r1 - l1) - (r2 - l2)) <= 2 and abs((b1 - t1) - (b2 - t2)) <= 1  # same width and height of ink
    assert abs((l1 + r1) - (l2 + r2)) <= 3 and abs((t1 + b1) - (t2 + b2)) <= 4  # centred on the same point
    # the same glyph shapes: the two inks correlate once aligned to the pixel (layouts round differently)
    assert best_correlation(ours, theirs) > 0.7  # measured 0.79-0.85; the same text reversed: about 0.4


def test_glyph_advances_add_up_to_matplotlibs_width():
    figure = Figure(dpi=DPI)
    renderer = FigureCanvasAgg(figure).get_renderer()
    for text in ("0.123456789", "windows x tokens"):
        width = figure.text(0, 0, text, fontsize=9).get_window_extent(renderer).width
        assert sum(glyph(c, 9, DPI).advance for c in text) == pytest.approx(width, abs=len(text) * 0.5 + 1)


def test_sprites_are_coloured_cached_and_multiline():
    sprite = text_sprite("0.25\nline two", "#d04040", 9, DPI)
    assert sprite.dtype == np.uint8 and sprite.shape[2] == 4
    ink = sprite[..., 3] > 0
    assert (sprite[ink][:, :3] == (0xD0, 0x40, 0x40)).all()
    one_line = text_sprite("0.25", "#d04040", 9, DPI)
    assert sprite.shape[0] > 2 * one_line.shape[0] - 2  # two lines, one gap
    assert text_sprite("0.25\nline two", "#d04040", 9, DPI) is sprite  # drawn once, then reused
    left = text_sprite("1\n22222", "black", 9, DPI, ha="left")[::-1, :, 3]
    right = text_sprite("1\n22222", "black", 9, DPI, ha="right")[::-1, :, 3]
    top_half = slice(0, left.shape[0] // 2)
    assert ink_box(left[top_half])[2] < 3 and ink_box(right[top_half])[3] > left.shape[1] - 3


def test_number_layer_centres_each_number_on_its_point():
    points = [(40, 15, "0.5", "black"), (200, 45, "12", "black")]

    def add(fig, ax):
        layer = NumberLayer(fontsize=9)
        ax.add_artist(layer)
        layer.set_items(points)

    alpha = drawn(add)
    height = alpha.shape[0]
    for x, y, _, _ in points:
        window = np.zeros_like(alpha)
        window[max(0, height - y - 12) : height - y + 12, x - 20 : x + 20] = alpha[
            max(0, height - y - 12) : height - y + 12, x - 20 : x + 20
        ]
        top, bottom, left, right = ink_box(window)
        assert abs((left + right) / 2 - x) <= 1.5 and abs((top + bottom) / 2 - (height - y)) <= 1.5
