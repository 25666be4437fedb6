"""Controls the explorers share: the grid sliders and slider ranges that follow other controls."""

import ipywidgets as widgets

from minattn.explore import receptive_field_explorer, window_explorer
from minattn.explore.controls import GRID_ROWS, follow_grid, grid_sliders, grid_values, set_slider_range


def test_grid_sliders_start_where_asked_within_their_ranges():
    sliders = grid_sliders((3, 7, 5), (2, 4, 3), (1, 6, 0), max_grid=(8, 20, 12), max_window=6)
    assert list(sliders) == [name for row in GRID_ROWS for name in row]
    assert all(isinstance(s, widgets.IntSlider) for s in sliders.values())
    assert [sliders[f"grid_{a}"].max for a in "dhw"] == [8, 20, 12]
    assert [sliders[f"window_{a}"].max for a in "dhw"] == [6, 6, 6]
    assert [sliders[f"token_{a}"].max for a in "dhw"] == [2, 6, 4]  # the last token of each axis
    assert grid_values(sliders) == ((3, 7, 5), (2, 4, 3), (1, 6, 0))


def test_token_sliders_follow_the_grid():
    sliders = grid_sliders((3, 7, 5), (2, 4, 3), (2, 6, 4), max_grid=(8, 20, 12))
    sliders["grid_h"].value = 4
    follow_grid(sliders, "grid_h", 4)
    assert sliders["token_h"].max == 3 and sliders["token_h"].value == 3  # clamped into the smaller grid
    sliders["grid_h"].value = 9
    follow_grid(sliders, "grid_h", 9)
    assert sliders["token_h"].max == 8 and sliders["token_h"].value == 3
    follow_grid(sliders, "window_w", 1)  # other sliders leave the tokens alone
    assert [sliders[f"token_{a}"].max for a in "dhw"] == [2, 8, 4]


def test_grid_values_clamp_a_token_outside_the_grid():
    sliders = grid_sliders((3, 7, 5), (2, 4, 3), (2, 6, 4), max_grid=(8, 20, 12))
    sliders["grid_w"].value = 2  # not followed yet: the token slider still says 4
    assert grid_values(sliders)[2] == (2, 6, 1)


def test_set_slider_range_moves_below_and_above_the_old_range():
    slider = widgets.IntSlider(value=5, min=3, max=8)
    set_slider_range(slider, 0, 2)  # entirely below the old minimum
    assert (slider.min, slider.max, slider.value) == (0, 2, 2)
    set_slider_range(slider, 10, 14)  # entirely above the old maximum
    assert (slider.min, slider.max, slider.value) == (10, 14, 10)


def test_both_grid_explorers_lay_out_and_follow_the_same_sliders():
    for explorer in (window_explorer(grid=(2, 6, 7), token=(1, 5, 6)), receptive_field_explorer(grid=(2, 6, 7))):
        assert {name for row in GRID_ROWS for name in row} <= set(explorer.controls)
        explorer.controls["grid_w"].value = 5
        assert explorer.controls["token_w"].max == 4 and explorer.state["token"][2] <= 4
        assert explorer.state["grid"] == (2, 6, 5) and explorer.state["error"] is None
