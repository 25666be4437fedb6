"""Show a lesson's figure so that it reads on JupyterLab's light and dark themes, with alt text.

Two things go wrong with a plain ``plt.show()`` in a notebook:

* **Dark theme.** A figure whose background is transparent (``facecolor="none"``,
  ``transparent=True``, a style that sets either) lets the page show through;
  matplotlib's default text and ticks are black, so on the dark theme they vanish.
  The inline backend only marks such a PNG with a ``needs_background`` hint.
  Here every figure is drawn on an opaque background instead: the figure's own
  colour, composited over white if it is partly transparent, which is what the
  light theme shows.
* **Alt text.** JupyterLab 4's image renderer builds its ``<img>`` from the PNG
  and its width/height metadata only: an ``alt`` key in the output metadata (which
  ``IPython.display.Image(alt=...)`` writes and nbconvert's HTML export reads) never
  reaches the page. Its HTML renderer does keep an ``<img>``'s ``alt`` attribute and
  a ``data:`` source, trusted or sanitized, and ranks HTML above PNG. So the figure
  is sent as an ``<img alt=...>`` in ``text/html``, with the alt text as the
  ``text/plain`` fallback for front ends that show no HTML.

Usage in a lesson::

    fig, ax = plt.subplots()
    ...
    show(fig, alt="Line plot of the loss (y) against the step (x): it falls fast, then levels off.")
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure

__all__ = ["BACKGROUND", "figure_bundle", "opaque_facecolor", "png", "show"]

BACKGROUND = "white"
"""The colour under every figure: what a transparent figure is composited over."""


def opaque_facecolor(fig: Figure) -> tuple[float, float, float, float]:
    """The figure's facecolor made opaque: composited over :data:`BACKGROUND`, alpha 1.

    Returns an RGBA tuple of floats in [0, 1] whose alpha is 1.
    """
    red, green, blue, alpha = colors.to_rgba(fig.get_facecolor())
    under = np.array(colors.to_rgb(BACKGROUND))
    mixed = alpha * np.array([red, green, blue]) + (1 - alpha) * under
    return (*(float(c) for c in mixed), 1.0)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes on an opaque background, cropped like the inline backend's (tight box)."""
    _check_figure(fig)
    buffer = io.BytesIO()
    background = opaque_facecolor(fig)
    # metadata={"Software": None}: no matplotlib version in the file, so a new release alone does
    # not change the stored outputs.
    fig.savefig(
        buffer,
        format="png",
        dpi=fig.dpi,
        bbox_inches="tight",
        facecolor=background,
        edgecolor=background,
        transparent=False,
        metadata={"Software": None},
    )
    return buffer.getvalue()


def figure_bundle(fig: Figure, *, alt: str) -> dict[str, str]:
    """The display data of ``fig``: ``{"text/html": "<img alt=... src=data:...>", "text/plain": alt}``."""
    alt = _check_alt(alt)
    source = base64.b64encode(png(fig)).decode("ascii")
    image = f'<img src="data:image/png;base64,{source}" alt="{html.escape(alt, quote=True)}">'
    return {"text/html": image, "text/plain": alt}


def show(fig: Figure, *, alt: str) -> None:
    """Display ``fig`` once, with alt text, on an opaque background; then close it.

    Args:
        fig: the figure, e.g. from ``plt.subplots()``.
        alt: what the figure shows for a reader who cannot see it, in one or two
            sentences: what is on the axes and what to notice.

    Closing the figure keeps the inline backend from showing it a second time at
    the end of the cell.
    """
    from IPython.display import display  # imported here: the rest of the module works without IPython
    from matplotlib import pyplot as plt

    bundle = figure_bundle(fig, alt=alt)
    display(bundle, raw=True)
    plt.close(fig)


def _check_figure(fig) -> None:
    if not isinstance(fig, Figure):
        raise TypeError(f"expected a matplotlib Figure (e.g. `fig` from `plt.subplots()`), got {type(fig).__name__}")


def _check_alt(alt) -> str:
    if not isinstance(alt, str):
        raise TypeError(f"alt must be a string describing the figure, got {type(alt).__name__}")
    if not alt.strip():
        raise ValueError(
            "alt text is empty: describe the figure in one or two sentences (what the axes show and "
            "what to notice), e.g. alt=\"Loss (y) against step (x): it falls, then levels off.\""
        )
    return alt.strip()
