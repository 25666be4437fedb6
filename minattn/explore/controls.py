"""Controls that several explorers share: slider ranges that follow other controls, and grid sliders.

The grid sliders pick a 3D token grid, a window on it and one token, nine
``IntSlider``s named ``grid_d, grid_h, grid_w, window_d, ..., token_w``. The
token sliders follow the grid (:func:`follow_grid`), and :func:`grid_values`
reads all three as tuples.
"""

from __future__ import annotations

import ipywidgets as widgets

__all__ = ["AXES", "GRID_ROWS", "follow_grid", "grid_sliders", "grid_values", "int_slider", "set_slider_range"]

AXES = "dhw"
# The grid sliders' rows, in the order an explorer lays them out: grid, window, token.
GRID_ROWS = [[f"{kind}_{axis}" for axis in AXES] for kind in ("grid", "window", "token")]


def int_slider(description: str, value: int, low: int, high: int, width: str = "230px") -> widgets.IntSlider:
    """An ``IntSlider`` labelled ``description`` whose label is never cut short."""
    return widgets.IntSlider(
        value=value,
        min=low,
        max=high,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width=width),
    )


def grid_sliders(grid, window, token, max_grid, max_window: int = 16) -> dict[str, widgets.IntSlider]:
    """Sliders for a token grid, a window and a picked token, each ``(D, H, W)``.

    Args:
        grid: the grid to start with.
        window: the window to start with.
        token: the token to start with, inside ``grid``.
        max_grid: the largest grid each slider offers ``(D, H, W)``.
        max_window: the largest window along any axis.

    Returns:
        ``{"grid_d": ..., "window_d": ..., "token_d": ..., ...}``, nine sliders.
    """
    return {
        **{f"grid_{a}": int_slider(f"grid {a.upper()}", g, 1, top) for a, g, top in zip(AXES, grid, max_grid)},
        **{f"window_{a}": int_slider(f"window {a.upper()}", w, 1, max_window) for a, w in zip(AXES, window)},
        **{f"token_{a}": int_slider(f"token {a}", t, 0, g - 1) for a, t, g in zip(AXES, token, grid)},
    }


def follow_grid(controls: dict, name: str, value: int) -> None:
    """After grid slider ``name`` moved to ``value``, keep its token slider inside the grid."""
    if name.startswith("grid_"):
        set_slider_range(controls[f"token_{name[-1]}"], 0, value - 1)


def grid_values(controls: dict) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(grid, window, token)`` from the grid sliders; the token clamped into the grid."""
    grid = tuple(controls[f"grid_{axis}"].value for axis in AXES)
    window = tuple(controls[f"window_{axis}"].value for axis in AXES)
    token = tuple(min(controls[f"token_{axis}"].value, g - 1) for axis, g in zip(AXES, grid))
    return grid, window, token


def set_slider_range(slider: widgets.IntSlider, low: int, high: int) -> None:
    """Change a slider's range, clamping its value, without going through an invalid state."""
    if high < slider.min:
        slider.min = low
        slider.max = high
    else:
        slider.max = high
        slider.min = low
    slider.value = min(max(slider.value, low), high)
