"""minattn.figures: figures on an opaque background, shown with alt text; and the stored figures of every lesson
and solution notebook."""

import base64
import io
import re
from pathlib import Path

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
from matplotlib import colors
from PIL import Image

from minattn import figures

ROOT = Path(__file__).resolve().parents[1]
ALT = "Line plot of y = x (y against x): a straight diagonal."

# Notebooks (by number, in course/ and solutions/) whose figures are not converted yet. Empty this once they are.
NOT_YET_CONVERTED = ()
# The solutions are executed notebooks with stored outputs too; the exercises are stored without outputs.
NOTEBOOKS = [
    p
    for folder in ("course", "solutions")
    for p in sorted((ROOT / folder).glob("[0-9][0-9]-*.ipynb"))
    if p.name[:2] not in NOT_YET_CONVERTED
]

IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
ALT_ATTRIBUTE = re.compile(r'\balt="([^"]*)"')
DATA_PNG = re.compile(r'\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _figure(facecolor="white"):
    fig, ax = plt.subplots(figsize=(2, 2), facecolor=facecolor)
    ax.plot([0, 1], [0, 1])
    return fig


def _alpha(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    return np.asarray(image.convert("RGBA"))[..., 3]


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture
def shown(monkeypatch):
    """What show() hands to IPython's display(): a list of (args, kwargs)."""
    calls = []
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_show_displays_html_img_with_alt_and_the_alt_as_plain_text(shown):
    fig = _figure()
    figures.show(fig, alt=ALT)
    assert len(shown) == 1
    (bundle,), kwargs = shown[0]
    assert kwargs == {"raw": True}  # the dict is the display data itself, not an object to repr
    assert set(bundle) == {"text/html", "text/plain"}
    assert bundle["text/plain"] == ALT
    (img,) = IMG.findall(bundle["text/html"])
    assert ALT_ATTRIBUTE.search(img).group(1) == ALT
    png = base64.b64decode(DATA_PNG.search(img).group(1))
    assert png.startswith(b"\x89PNG")


def test_show_closes_the_figure_so_the_inline_backend_does_not_show_it_again(shown):
    fig = _figure()
    assert plt.fignum_exists(fig.number)
    figures.show(fig, alt=ALT)
    assert not plt.fignum_exists(fig.number)


def test_alt_text_is_escaped_inside_the_attribute():
    bundle = figures.figure_bundle(_figure(), alt='weights "a" < 0.5 & b')
    (img,) = IMG.findall(bundle["text/html"])
    assert 'alt="weights &quot;a&quot; &lt; 0.5 &amp; b"' in img
    assert bundle["text/plain"] == 'weights "a" < 0.5 & b'


@pytest.mark.parametrize("facecolor", ["white", "none", (0.2, 0.4, 0.6, 0.3), "black"])
def test_png_is_opaque_whatever_the_figure_facecolor(facecolor):
    fig = _figure(facecolor)
    png = figures.png(fig)
    assert _alpha(png).min() == 255
    plt.close(fig)


def test_a_transparent_figure_is_drawn_on_white_and_a_coloured_one_keeps_its_colour():
    clear, dark = _figure("none"), _figure("black")
    assert tuple(_rgb(figures.png(clear))[0, 0]) == (255, 255, 255)  # a corner: background, not plot
    assert tuple(_rgb(figures.png(dark))[0, 0]) == (0, 0, 0)
    plt.close("all")


def test_opaque_facecolor_composites_over_white():
    fig = _figure((0.0, 0.0, 1.0, 0.5))
    assert figures.opaque_facecolor(fig) == pytest.approx((0.5, 0.5, 1.0, 1.0))
    plt.close(fig)


def test_png_does_not_change_the_figure():
    fig = _figure("none")
    figures.png(fig)
    assert fig.get_facecolor() == (0.0, 0.0, 0.0, 0.0)
    plt.close(fig)


def test_missing_alt_is_an_error_naming_alt():
    fig = _figure()
    with pytest.raises(TypeError, match="alt"):
        figures.show(fig)
    assert plt.fignum_exists(fig.number)  # nothing was shown or closed
    plt.close(fig)


@pytest.mark.parametrize("alt", ["", "   \n"])
def test_empty_alt_is_an_error_that_says_what_to_write(alt, shown):
    fig = _figure()
    with pytest.raises(ValueError, match="alt text is empty: describe the figure"):
        figures.show(fig, alt=alt)
    assert not shown
    plt.close(fig)


def test_alt_that_is_not_text_is_an_error():
    with pytest.raises(TypeError, match="alt must be a string"):
        figures.figure_bundle(_figure(), alt=None)
    plt.close("all")


def test_something_other_than_a_figure_is_an_error():
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match="expected a matplotlib Figure.*got Axes"):
        figures.show(ax, alt=ALT)
    plt.close(fig)


@pytest.mark.parametrize("style_facecolor", ["none", "black"])
def test_explorer_figures_are_white_whatever_the_matplotlib_style(style_facecolor):
    from minattn.explore._base import Explorer

    class Blank(Explorer):
        def build(self, figure):
            figure.add_axes((0.3, 0.3, 0.4, 0.4))  # leaves a margin of bare figure background

        def update(self):
            pass

    with matplotlib.rc_context({"figure.facecolor": style_facecolor, "figure.edgecolor": style_facecolor}):
        explorer = Blank({"n": widgets.IntSlider(value=0)}, [["n"]], figsize=(2, 2))
    assert colors.to_rgba(explorer.figure.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
    assert tuple(_rgb(explorer.png())[0, 0]) == (255, 255, 255)  # a corner of the picture the widget shows


def _stored_figures(notebook: Path):
    """(cell index, output) for every output of the notebook that holds a picture."""
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if any(key.startswith("image/") for key in data) or IMG.search(data.get("text/html", "")):
                yield index, output


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_stored_figure_has_alt_text_and_an_opaque_background(notebook):
    for index, output in _stored_figures(notebook):
        data = output["data"]
        where = f"{notebook.parent.name}/{notebook.name}, cell {index}"
        raw = [key for key in data if key.startswith("image/")]
        assert not raw, f"{where}: a bare {raw[0]} output has no alt text in JupyterLab; use minattn.figures.show"
        for img in IMG.findall(data["text/html"]):
            alt = ALT_ATTRIBUTE.search(img)
            assert alt and alt.group(1).strip(), f"{where}: an <img> without alt text"
            assert not alt.group(1).startswith("&lt;Figure"), f"{where}: the alt text is matplotlib's repr"
            source = DATA_PNG.search(img)
            assert source, f"{where}: the <img> is not an embedded PNG"
            assert _alpha(base64.b64decode(source.group(1))).min() == 255, f"{where}: the figure is transparent"
