"""What every explorer shares: controls, a message line, a figure updated in place.

An explorer is an ``ipywidgets.VBox``: a title, rows of controls, a message
line (empty unless a value is bad), the figure, and an info line. The figure
is a plain ``matplotlib.figure.Figure`` on an Agg canvas, made once with all
its artists. A control change recomputes the explorer's state, updates those
artists (``set_data``, ``set_text``, ...), redraws the one figure and shows the
PNG as an ``<img>`` with alt text (in an ``ipywidgets.HTML``: the ``Image``
widget has no alt attribute), which the browser swaps in place.

The alt text is the explorer's ``description`` (what its panels draw, written
once per explorer) followed by its info line as it reads now, so a screen
reader hears both what kind of picture it is and what it currently shows.

Rendering this way does not depend on the notebook's matplotlib backend
(inline, widget or none at all): the explorer never goes through pyplot, so a
figure is never displayed twice or left open, and tests run headlessly.

Each explorer exposes
    ``controls``: dict name -> widget, to drive it from code or tests,
    ``state``: dict of what is currently shown (arrays, texts, ``error``),
    ``last_update_s``: seconds the last update took (compute + draw + PNG),
    ``alt_text()``: the alt text of the picture now shown.

Its CSS classes in the page are ``minattn-explorer`` and, for an explorer
made by a registered function, the function's own (:mod:`.registry`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import re
import time
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from ..figures import BACKGROUND
from .registry import css_class, function_name
from .text import Label, NumberLayer

__all__ = ["Explorer", "ExplorerError", "Heatmap"]

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
    #: What the picture draws, panel by panel, for its alt text (the info line is added to it).
    description = ""

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
        # An opaque background of its own, whatever the learner's matplotlib style says: the PNG below
        # keeps no alpha channel, and the page (light or dark theme) must not show through.
        self.figure = Figure(figsize=figsize, dpi=dpi, facecolor=BACKGROUND, edgecolor=BACKGROUND)
        self.canvas = FigureCanvasAgg(self.figure)
        self._dynamic: list = []  # artists redrawn on every update (the rest is a cached background)
        self._background = None
        self._width = int(figsize[0] * dpi)
        self._png = b""
        # Named `picture`, not `image`: subclasses commonly call their imshow artist `image`.
        self.picture = widgets.HTML(value="")
        title = widgets.HTML(f"<b>{html.escape(self.title)}</b>") if self.title else widgets.HTML("")
        boxes = [widgets.HBox([self.controls[name] for name in row]) for row in rows]
        self.children = [title, *boxes, self.message, self.picture, self.info]
        # CSS classes name the explorer in the page, so a browser test can find each one.
        for name in self.css_classes():
            self.add_class(name)
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
    def css_classes(cls) -> list[str]:
        """``minattn-explorer``, then the registered function's class: ``["minattn-explorer", "minattn-explorer-cost"]``."""
        function = function_name(cls)
        return ["minattn-explorer"] + ([css_class(function)] if function else [])

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
        except Exception as exc:  # noqa: BLE001 - a bug: say so in the widget, not in a log nobody sees
            self._show_error(f"unexpected {type(exc).__name__}: {exc}")
        else:
            self.state["error"] = None
            note = self.state.get("note") or ""
            self.message.value = f"<div style='{_NOTE_STYLE}'>{html.escape(note)}</div>" if note else ""
        finally:
            torch.set_num_threads(threads)
        self.update_count += 1
        self.last_update_s = time.perf_counter() - start

    def show_info(self, text: str, monospace: bool = False) -> None:
        """Write ``text`` (HTML) in the info line under the figure; ``state["text"]`` keeps it for tests."""
        self.state["text"] = text
        font = "font-family:monospace;" if monospace else ""
        self.info.value = f"<div style='{font}font-size:12px'>{text}</div>"

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
    ) -> Label:
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
        self._png = buffer.getvalue()
        source = "data:image/png;base64," + base64.b64encode(self._png).decode("ascii")
        self.picture.value = (
            f'<img src="{source}" alt="{html.escape(self.alt_text(), quote=True)}" '
            f'style="width:{self._width}px;max-width:100%;display:block">'
        )

    def alt_text(self) -> str:
        """What the picture shows, in words: the explorer's ``description``, then its info line as plain text."""
        now = _plain_text(self.info.value)
        parts = [self.description.strip() or self.title, f"Now: {now}" if now else ""]
        return " ".join(part for part in parts if part)

    def png(self) -> bytes:
        """The PNG currently shown (the source of the picture's ``<img>``)."""
        return self._png


def _plain_text(markup: str) -> str:
    """``"<b>5</b> tokens<br>of 8"`` -> ``"5 tokens of 8"``: tags become spaces, entities characters."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


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
